"""
The optimizer: AdamW over parameter groups (weight decay only where it helps), or, with muon,
Muon for the transformer blocks' matrices and AdamW for the rest. The training loop sets each
group's learning rate at every step (trainer.learning_rate_at, times the group's lr_scale).
"""
from __future__ import annotations

import math

import torch


def make_optimizer(model: torch.nn.Module, learning_rate: float, weight_decay: float, beta2: float,
                   muon: bool = False, muon_lr_scale: float = 1.0, dtype: str = "float32"):
    """AdamW over the trainable parameters. Weight decay only on matrices (Linear layers' and
    LoRA's A and B): decaying LayerNorm gains and biases pulls them toward zero for no benefit,
    and decaying an embedding shrinks the rows of rare tokens between the few steps that update
    them (a tied output layer shares the token embedding, so it is left out too). With muon, the
    blocks' matrices take Muon instead, with the same weight decay; every group's lr_scale
    multiplies the schedule's learning rate (Muon's: muon_lr_scale). dtype is the training's
    precision, which Muon's orthogonalisation runs in."""
    embeddings = {id(p) for m in model.modules() if isinstance(m, torch.nn.Embedding) for p in m.parameters()}
    trainable = [p for p in model.parameters() if p.requires_grad]
    block_matrices = {name: p for name, p in model.named_parameters() if muon and ".h." in name and p.dim() == 2
                      and p.requires_grad}
    taken = {id(p) for p in block_matrices.values()}
    decay = [p for p in trainable if p.dim() >= 2 and id(p) not in embeddings and id(p) not in taken]
    no_decay = [p for p in trainable if p.dim() < 2 or id(p) in embeddings]
    groups = [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    adamw = torch.optim.AdamW(groups, lr=learning_rate, betas=(0.9, beta2), foreach=True)
    if not muon:
        return adamw
    # attention's c_attn holds the query, key and value matrices stacked: each is orthogonalised on its own
    groups = [{"params": [p for name, p in block_matrices.items() if name.endswith("c_attn.weight") == fused],
               "slices": 3 if fused else 1, "lr_scale": muon_lr_scale} for fused in (True, False)]
    return MuonAndAdamW(Muon(groups, learning_rate, weight_decay, dtype=getattr(torch, dtype)), adamw)


class Muon(torch.optim.Optimizer):
    """Momentum, orthogonalised: each matrix moves along its momentum with every direction given
    about the same size (the singular values set near 1), so that the few directions dominating a
    gradient do not drown the rest. Nesterov momentum, decoupled weight decay, and the update
    scaled by 0.2 sqrt(max(rows, columns)) so that its size per element matches AdamW's at the
    same learning rate. A group's "slices" cuts each matrix into that many stacked matrices,
    orthogonalised one by one. torch.optim.Muon computes the same but always orthogonalises in
    bf16, which a CPU without bf16 emulates many times slower; here it runs in dtype: bf16 where
    the training runs in it (a third of fp32's time on a CPU with bf16), else fp32."""

    def __init__(self, params, lr: float, weight_decay: float, momentum: float = 0.95, dtype: torch.dtype = torch.float32):
        super().__init__(params, {"lr": lr, "weight_decay": weight_decay, "momentum": momentum, "slices": 1})
        self.dtype = dtype

    @torch.no_grad()
    def step(self) -> None:
        for group in self.param_groups:
            for p in group["params"]:
                if p.grad is None:
                    continue
                state = self.state[p]
                if "momentum" not in state:
                    state["momentum"] = torch.zeros_like(p)
                momentum = state["momentum"].lerp_(p.grad, 1 - group["momentum"])
                stacked = p.grad.lerp(momentum, group["momentum"]).view(group["slices"], -1, p.shape[1])
                p.mul_(1 - group["lr"] * group["weight_decay"])
                update = orthogonalise(stacked.to(self.dtype)).view_as(p).to(p.dtype)
                p.add_(update, alpha=-group["lr"] * 0.2 * math.sqrt(max(stacked.shape[1:])))


def orthogonalise(g: torch.Tensor, steps: int = 5) -> torch.Tensor:
    """About U V^T for each matrix g = U S V^T (of a stack): five Newton-Schulz steps of the quintic
    x -> a x + b x^3 + c x^5 (on singular values), its coefficients chosen to pull every value not
    too near 0 toward 1 fast, landing between about 0.7 and 1.2 rather than on 1 (Keller Jordan's Muon).
    Each step is x -> p(x x^T) x, so on a matrix at least twice as long as it is wide (the MLP's)
    the steps run on its small square Gram matrix, x_k = p_k ... p_1 x_0, and only the last product
    touches the long side: the same values for about half the work. Only in fp32 or wider: the Gram
    matrix's steps never re-read x, so in bf16 their rounding adds up (singular values up to 7 for a
    gradient of a few strong directions, and pretraining diverged)."""
    a, b, c = 3.4445, -4.7750, 2.0315
    wide = g.shape[-2] <= g.shape[-1]
    x = g if wide else g.mT  # the Gram matrix x x^T is the smaller square
    x = x / x.norm(dim=(-2, -1), keepdim=True).clamp(min=1e-7)  # singular values at most 1: where it converges
    if x.shape[-1] < 2 * x.shape[-2] or x.dtype.itemsize < 4:  # near square, or bf16: the steps on x itself
        for _ in range(steps):
            gram = x @ x.mT
            x = a * x + (b * gram + c * gram @ gram) @ x
    else:  # long: the steps on its Gram matrix, x_k = p_k ... p_1 x_0
        gram = x @ x.mT
        eye = torch.eye(gram.shape[-1], dtype=gram.dtype, device=gram.device)
        product = eye
        for _ in range(steps):
            poly = a * eye + b * gram + c * gram @ gram
            product = poly @ product
            gram = poly @ gram @ poly  # the next step's x x^T (poly is symmetric)
        x = product @ x
    return x if wide else x.mT


class MuonAndAdamW:
    """Two optimizers stepped, saved and restored as one (the loop sets every group's lr)."""

    def __init__(self, muon: torch.optim.Optimizer, adamw: torch.optim.Optimizer):
        self.muon, self.adamw = muon, adamw

    @property
    def param_groups(self) -> list[dict]:  # read afresh: load_state_dict replaces each optimizer's groups
        return self.muon.param_groups + self.adamw.param_groups

    @property
    def state(self) -> dict:  # each parameter's state, as a torch optimizer keeps it
        return {**self.muon.state, **self.adamw.state}

    def step(self) -> None:
        self.muon.step()
        self.adamw.step()

    def zero_grad(self, set_to_none: bool = True) -> None:
        self.muon.zero_grad(set_to_none)
        self.adamw.zero_grad(set_to_none)

    def state_dict(self) -> dict:
        return {"muon": self.muon.state_dict(), "adamw": self.adamw.state_dict()}

    def load_state_dict(self, state: dict) -> None:
        self.muon.load_state_dict(state["muon"])
        self.adamw.load_state_dict(state["adamw"])
