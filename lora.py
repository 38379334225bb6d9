"""
LoRA, written by hand: the pretrained weights stay frozen and two small matrices per adapted
layer learn the change, W x + (alpha / r) * B A x (Hu et al., 2021, arXiv 2106.09685).

A (r x in) starts small and random, B (out x r) at zero, so an adapted model starts exactly at
the pretrained one. Only A and B train: a few percent of the parameters, and the optimizer
keeps state for those alone. The adapter is saved by itself, tied to its base checkpoint by a
fingerprint of the base weights, and can be merged into a plain checkpoint that runs without
any of this code:

    python lora.py merge out/lora/adapter.pt      # writes out/lora/merged.pt
"""
from __future__ import annotations

import hashlib
import math
from pathlib import Path

import torch
import torch.nn as nn

from checkpoint import load_checkpoint, load_model, run_file, save_checkpoint
from cli import UserError, parse_args, run


class LoRALinear(nn.Module):
    """A frozen nn.Linear plus the low-rank update (alpha / rank) * B A."""

    def __init__(self, base: nn.Linear, rank: int, alpha: float, dropout: float):
        super().__init__()
        self.base = base
        self.base.weight.requires_grad_(False)
        # A as (rank, in), the loralib/peft layout: kaiming_uniform_(a=sqrt(5)) then bounds it
        # by 1/sqrt(in); stored as (in, rank) the same call would give 1/sqrt(rank), far larger
        self.lora_A = nn.Parameter(torch.empty(rank, base.in_features))
        self.lora_B = nn.Parameter(torch.zeros(base.out_features, rank))
        nn.init.kaiming_uniform_(self.lora_A, a=math.sqrt(5))
        self.scale = alpha / rank
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.base(x) + (self.dropout(x) @ self.lora_A.t() @ self.lora_B.t()) * self.scale

    def delta_weight(self) -> torch.Tensor:
        return (self.lora_B @ self.lora_A) * self.scale


def add_lora(model: nn.Module, targets: list[str], rank: int, alpha: float, dropout: float) -> list[str]:
    """Wrap every nn.Linear whose name ends with one of targets (e.g. "c_attn", "mlp.c_proj").
    Freezes the whole model except the new LoRA matrices. Returns the wrapped layers' names."""
    for p in model.parameters():
        p.requires_grad_(False)
    chosen = {}  # full name: (the module that holds the layer, the layer's name in it)
    for name, module in model.named_modules():
        for child_name, child in module.named_children():
            full_name = f"{name}.{child_name}" if name else child_name
            if isinstance(child, nn.Linear) and any(full_name.endswith(t) for t in targets) and "lm_head" not in full_name:
                chosen[full_name] = (module, child_name)
    if not chosen:
        raise UserError(f"--lora_targets={','.join(targets)} matches no linear layer of the model "
                        "(its layers: c_attn, attn.c_proj, c_fc, mlp.c_proj)")
    narrowest = min(min(getattr(module, child_name).weight.shape) for module, child_name in chosen.values())
    if rank > narrowest:  # B A cannot have a higher rank than a layer's narrower side
        raise UserError(f"--lora_rank={rank} is above the adapted layers' narrower side ({narrowest}): it adds weights, "
                        f"not capacity. Use at most {narrowest}")
    for module, child_name in chosen.values():
        setattr(module, child_name, LoRALinear(getattr(module, child_name), rank, alpha, dropout))
    return list(chosen)


def lora_state_dict(model: nn.Module) -> dict[str, torch.Tensor]:
    """The adapter: the LoRA matrices and nothing else."""
    return {k: v.detach().clone() for k, v in model.state_dict().items() if ".lora_" in k}


def load_lora_state(model: nn.Module, state: dict[str, torch.Tensor]) -> None:
    missing = [k for k in state if k not in model.state_dict()]
    if missing or not state:
        raise UserError("the adapter's tensors do not fit this model (were the LoRA layers or rank changed?)")
    model.load_state_dict(state, strict=False)


def merge_lora(model: nn.Module) -> nn.Module:
    """Fold every LoRA update into its base weight and put the plain nn.Linear back."""
    for module in list(model.modules()):
        for child_name, child in list(module.named_children()):
            if isinstance(child, LoRALinear):
                with torch.no_grad():
                    child.base.weight += child.delta_weight()
                child.base.weight.requires_grad_(True)
                setattr(module, child_name, child.base)
    return model


def weights_fingerprint(state_dict: dict[str, torch.Tensor]) -> str:
    """A short hash of a model's weights: an adapter records its base's, and refuses any other."""
    digest = hashlib.sha256()
    for name in sorted(state_dict):
        if ".lora_" not in name:
            digest.update(name.encode())
            digest.update(state_dict[name].detach().cpu().contiguous().view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()[:16]


def load_adapted_model(adapter_path: str | Path, base_path: str | Path | None = None, device: str = "cpu",
                       base_option: str = "--ckpt"):
    """The base model with its LoRA adapter on top, checked to be the base it was trained on.
    base_option: the command-line option that names the base, for the messages.
    -> (model, tokenizer, the base's path)"""
    adapter = load_checkpoint(adapter_path, required=("lora", "lora_config", "base_fingerprint", "base_path"),
                              option="--adapter")
    if not base_path and not Path(adapter["base_path"]).exists():  # recorded as typed, relative to where it was trained
        raise UserError(f"the adapter's base {adapter['base_path']} (as given when it was trained) is not there from "
                        f"{Path.cwd()}: run from the folder it was trained in, or give its base with {base_option}")
    base_path = base_path or adapter["base_path"]
    base = load_checkpoint(base_path, option=base_option)
    if weights_fingerprint(base["model"]) != adapter["base_fingerprint"]:
        raise UserError(f"the adapter {adapter_path} was trained on another base model than {base_path} "
                        f"(their weights differ): give the base it was trained on with {base_option}, or train the adapter again")
    model, tokenizer = load_model(base, device)
    try:
        cfg = adapter["lora_config"]
        add_lora(model, cfg["targets"], cfg["rank"], cfg["alpha"], 0.0)
        load_lora_state(model, adapter["lora"])
    except (TypeError, RuntimeError, ValueError, KeyError, IndexError) as e:
        raise UserError(f"{adapter_path} does not fit its base ({str(e).splitlines()[0][:200]}): the file was altered "
                        "or comes from another program") from None
    return model.to(device).eval(), tokenizer, str(base_path)


def merged_checkpoint(model: nn.Module, tokenizer) -> dict:
    """A plain checkpoint of the model with every LoRA update folded in: sample.py runs it with
    no LoRA code. (The model is changed in place.)"""
    return {"model": merge_lora(model).state_dict(), "model_config": model.config.__dict__, "vocab": tokenizer.vocab,
            "kind": "merged"}


def main() -> None:
    options = {"out": ("", "where to write the merged checkpoint, a file or a folder (default: merged.pt beside the adapter)"),
               "base": ("", "the base checkpoint (default: the one the adapter was trained on, as it records)")}
    config, args, _ = parse_args(options, "python lora.py merge ADAPTER [--out=PATH]", __doc__, positional="merge ADAPTER")
    if len(args) != 2 or args[0] != "merge":
        raise UserError("usage: python lora.py merge out/lora/adapter.pt")
    adapter = run_file(args[1], adapter=True)  # a LoRA run's folder: its adapter.pt
    out = Path(config["out"]) if config["out"] else adapter.with_name("merged.pt")
    out = out / "merged.pt" if out.is_dir() else out  # a folder: the file goes into it
    model, tokenizer, base_path = load_adapted_model(adapter, config["base"] or None, base_option="--base")
    if out.resolve() in (adapter.resolve(), Path(base_path).resolve()):
        raise UserError(f"--out={out} would write over an input of the merge: choose another path")
    save_checkpoint(merged_checkpoint(model, tokenizer), out)
    print(f"merged {adapter} into its base: {out} (a plain checkpoint: python sample.py --ckpt={out})")


if __name__ == "__main__":
    run(main)
