"""
The GPT: a decoder-only transformer in the nanoGPT mould. Pre-LayerNorm blocks, causal
self-attention, a GELU MLP, learned positions, and the output layer tied to the token
embedding: GPT-2's choices, each of which a GPTConfig flag swaps for the NanoGPT speedrun's
(rotary positions, QK-norm, ReLU², zero-initialised projections, an untied or capped output
layer). It knows nothing about files, data or training.

forward(idx, targets) gives the loss; forward(idx) gives the next-token logits at the last
position. With a kv_cache (new_kv_cache), each call appends its tokens' keys and values to the
cache and attends over everything cached so far, so generating one more token costs one
token's work plus attention over the context, not a re-run of the whole context.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

import torch
import torch.nn as nn
from torch.nn import functional as F

IGNORE = -100  # a target that does not count (prompt tokens in fine-tuning)


@dataclass
class GPTConfig:
    block_size: int = 256  # the longest context
    vocab_size: int = 1216  # rows of the embedding: the tokenizer's vocabulary rounded up to a multiple of 64
    n_layer: int = 6
    n_head: int = 6
    n_embd: int = 384
    dropout: float = 0.0
    bias: bool = False  # biases in Linear and LayerNorm: a little slower and no better at this scale
    # Changes since GPT-2 (the NanoGPT speedrun's; docs/quality.md measures them). Off gives GPT-2's
    # choice, and a checkpoint saved before a flag existed loads with it off: keep these defaults off.
    rope: bool = False  # rotary position embeddings in attention instead of a learned position table
    qk_norm: bool = False  # queries and keys RMS-normalised per head before their dot product
    relu2: bool = False  # the MLP's activation relu(x)^2 instead of GELU
    zero_init: bool = False  # projections into the residual stream start at zero: each block starts as the identity
    untied: bool = False  # an output layer of its own instead of the token embedding's transpose
    logit_cap: float = 0.0  # logits squashed smoothly into (-cap, cap) by cap * tanh(logits / cap); 0: off


class CausalSelfAttention(nn.Module):
    def __init__(self, config: GPTConfig):
        super().__init__()
        assert config.n_embd % config.n_head == 0, "n_embd must be a multiple of n_head"
        self.n_head = config.n_head
        self.c_attn = nn.Linear(config.n_embd, 3 * config.n_embd, bias=config.bias)  # query, key, value at once
        self.c_proj = nn.Linear(config.n_embd, config.n_embd, bias=config.bias)
        self.dropout = config.dropout
        self.resid_dropout = nn.Dropout(config.dropout)
        # True above the diagonal: the future a position must not see (not saved with the weights)
        future = torch.ones(config.block_size, config.block_size, dtype=torch.bool).triu(diagonal=1)
        self.register_buffer("future", future, persistent=False)
        self.qk_norm = config.qk_norm
        if config.rope:  # the angle of each position and channel pair (not saved with the weights)
            half = config.n_embd // config.n_head // 2
            angles = torch.outer(torch.arange(config.block_size), 10000.0 ** (-torch.arange(half) / half))
            self.register_buffer("cos", angles.cos(), persistent=False)
            self.register_buffer("sin", angles.sin(), persistent=False)
        self.rope = config.rope

    def forward(self, x: torch.Tensor, layer_cache: tuple[torch.Tensor, torch.Tensor] | None, pos: int) -> torch.Tensor:
        B, T, C = x.shape
        q, k, v = self.c_attn(x).split(C, dim=2)
        # (B, T, C) -> (B, n_head, T, head_size)
        q, k, v = (t.view(B, T, self.n_head, C // self.n_head).transpose(1, 2) for t in (q, k, v))
        if self.qk_norm:
            q, k = F.rms_norm(q, (q.shape[-1],)), F.rms_norm(k, (k.shape[-1],))
        if self.rope:
            q, k = self.rotate(q, pos), self.rotate(k, pos)
        if layer_cache is None and x.device.type == "cpu":
            y = self.plain_attention(q, k, v)
        else:
            y = self.fused_attention(q, k, v, layer_cache, pos)
        y = y.transpose(1, 2).contiguous().view(B, T, C)
        return self.resid_dropout(self.c_proj(y))

    def rotate(self, x: torch.Tensor, pos: int) -> torch.Tensor:
        """Rotary position embedding: each pair of channels (one from each half) turned by an angle
        proportional to the position, so that a query-key dot product depends on their distance."""
        T, half = x.shape[2], x.shape[-1] // 2
        cos, sin = self.cos[pos:pos + T].to(x.dtype), self.sin[pos:pos + T].to(x.dtype)
        x1, x2 = x[..., :half], x[..., half:]
        return torch.cat((x1 * cos - x2 * sin, x1 * sin + x2 * cos), dim=-1)

    def plain_attention(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        """Attention written out: two matmuls and a masked softmax. On a CPU, training at these
        contexts, this is faster than scaled_dot_product_attention, whose CPU kernel (flash
        attention, built for long contexts) spends a fifth of the training step, mostly in its
        backward; bench.py measures the difference."""
        T = q.shape[2]
        scores = (q @ k.transpose(-2, -1)) * (1.0 / math.sqrt(k.shape[-1]))
        weights = scores.masked_fill(self.future[:T, :T], float("-inf")).softmax(dim=-1)
        if self.dropout > 0 and self.training:
            weights = F.dropout(weights, self.dropout)
        return weights @ v

    def fused_attention(self, q, k, v, layer_cache, pos: int) -> torch.Tensor:
        """scaled_dot_product_attention: on a GPU, and with the KV cache (one new query at a
        time), where its fused kernels win. New keys and values go into the cache first."""
        T = q.shape[2]
        is_causal, mask = True, None
        if layer_cache is not None:
            cache_k, cache_v = layer_cache
            cache_k[:, :, pos:pos + T] = k
            cache_v[:, :, pos:pos + T] = v
            k, v = cache_k[:, :, :pos + T], cache_v[:, :, :pos + T]
            if pos > 0:  # new queries see all the cache and, among themselves, only the past
                is_causal = False
                if T > 1:
                    mask = torch.ones(T, pos + T, dtype=torch.bool, device=q.device).tril(diagonal=pos)
        return F.scaled_dot_product_attention(q, k, v, attn_mask=mask, is_causal=is_causal,
                                              dropout_p=self.dropout if self.training else 0.0)


class MLP(nn.Module):
    def __init__(self, config: GPTConfig):
        super().__init__()
        self.c_fc = nn.Linear(config.n_embd, 4 * config.n_embd, bias=config.bias)
        self.c_proj = nn.Linear(4 * config.n_embd, config.n_embd, bias=config.bias)
        self.dropout = nn.Dropout(config.dropout)
        self.relu2 = config.relu2

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.c_fc(x)
        h = F.relu(h).square() if self.relu2 else F.gelu(h)
        return self.dropout(self.c_proj(h))


class Block(nn.Module):
    def __init__(self, config: GPTConfig):
        super().__init__()
        self.ln_1 = nn.LayerNorm(config.n_embd, bias=config.bias)
        self.attn = CausalSelfAttention(config)
        self.ln_2 = nn.LayerNorm(config.n_embd, bias=config.bias)
        self.mlp = MLP(config)

    def forward(self, x: torch.Tensor, layer_cache=None, pos: int = 0) -> torch.Tensor:
        x = x + self.attn(self.ln_1(x), layer_cache, pos)
        return x + self.mlp(self.ln_2(x))


class GPT(nn.Module):
    def __init__(self, config: GPTConfig):
        super().__init__()
        self.config = config
        self.transformer = nn.ModuleDict(dict(
            wte=nn.Embedding(config.vocab_size, config.n_embd),
            **({} if config.rope else {"wpe": nn.Embedding(config.block_size, config.n_embd)}),
            drop=nn.Dropout(config.dropout),
            h=nn.ModuleList([Block(config) for _ in range(config.n_layer)]),
            ln_f=nn.LayerNorm(config.n_embd, bias=config.bias),
        ))
        self.lm_head = nn.Linear(config.n_embd, config.vocab_size, bias=False)
        if not config.untied:
            self.lm_head.weight = self.transformer.wte.weight  # tied: one matrix reads and writes tokens
        self.apply(self._init_weights)
        # GPT-2's scaled init of the projections into the residual stream: its variance stays put with depth
        for name, p in self.named_parameters():
            if name.endswith("c_proj.weight"):
                nn.init.normal_(p, mean=0.0, std=0.0 if config.zero_init else 0.02 / math.sqrt(2 * config.n_layer))

    def _init_weights(self, module: nn.Module) -> None:
        if isinstance(module, (nn.Linear, nn.Embedding)):
            nn.init.normal_(module.weight, mean=0.0, std=0.02)
            if getattr(module, "bias", None) is not None:
                nn.init.zeros_(module.bias)

    def forward(self, idx: torch.Tensor, targets: torch.Tensor | None = None,
                kv_cache: dict | None = None) -> tuple[torch.Tensor | None, torch.Tensor | None]:
        """idx (B, T) token ids. With targets (B, T): -> (None, mean loss over the targets that are
        not IGNORE). Without: -> (logits of the last position (B, vocab), None)."""
        B, T = idx.shape
        pos = kv_cache["pos"] if kv_cache is not None else 0
        if pos + T > self.config.block_size:
            raise ValueError(f"{pos + T} tokens do not fit the context of {self.config.block_size}")
        x = self.transformer.wte(idx)
        if not self.config.rope:
            x = x + self.transformer.wpe(torch.arange(pos, pos + T, device=idx.device))
        x = self.transformer.drop(x)
        for i, block in enumerate(self.transformer.h):
            layer_cache = (kv_cache["k"][i], kv_cache["v"][i]) if kv_cache is not None else None
            x = block(x, layer_cache, pos)
        if kv_cache is not None:
            kv_cache["pos"] = pos + T
        x = self.transformer.ln_f(x)
        if targets is None:
            return self.output_logits(x[:, -1, :]), None
        # The loss: cross-entropy of the next token, over the targets that count (a fine-tuning
        # prompt's are IGNORE), the same as F.cross_entropy(self.output_logits(x).flatten(0, 1),
        # targets.flatten(), ignore_index=IGNORE), computed more frugally:
        return None, counted_cross_entropy(self.output_logits, x, targets, self.config.vocab_size)

    def output_logits(self, x: torch.Tensor) -> torch.Tensor:
        """The output layer, in fp32, capped where logit_cap is set."""
        logits = self.lm_head(x).float()
        cap = self.config.logit_cap
        return cap * torch.tanh(logits / cap) if cap else logits

    def num_params(self, non_embedding: bool = True) -> int:
        """Parameter count; lookup tables (positions, and the token table where the output layer
        has its own matrix) are left out by default, as they do no matmul. A tied token table
        stays: it is the output layer, a matmul at every position."""
        n = sum(p.numel() for p in self.parameters())
        if non_embedding and "wpe" in self.transformer:
            n -= self.transformer.wpe.weight.numel()
        if non_embedding and self.config.untied:
            n -= self.transformer.wte.weight.numel()
        return n

    def training_flops(self, positions: int, counted: int | None = None, weights_train: bool = True) -> float:
        """Matmul FLOPs of a training step over `positions` tokens, `counted` of which have a
        target (default: all). Forward: 2 per weight per position, the output layer only where
        a target counts, plus 4 per layer, context position and channel for attention's scores
        and weighted sum. Backward: twice the forward (gradients of inputs and of weights); for
        linear layers whose weights are frozen (LoRA, its small adapters aside), once."""
        c = self.config
        counted = positions if counted is None else counted
        output_layer = c.vocab_size * c.n_embd
        linear = 2 * (self.num_params() - output_layer) * positions + 2 * output_layer * counted
        attention = 4 * c.n_layer * c.n_embd * c.block_size * positions
        return (3 if weights_train else 2) * linear + 3 * attention


def counted_cross_entropy(output_layer: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor, targets: torch.Tensor,
                          vocab_size: int) -> torch.Tensor:
    """The mean cross-entropy over the targets that are not IGNORE. The output layer, the
    costliest matmul at small scale, runs only where a target counts (in fine-tuning most
    positions are prompt), and on slices of about 16 MB of fp32 logits: a whole batch's (134 MB
    at 4,096 positions and 8,192 tokens) is more than the C allocator keeps for reuse, so it
    would be mapped and faulted in afresh at every step (machine.keep_freed_memory)."""
    counts = targets != IGNORE
    x, targets = x[counts], targets[counts]
    rows = max(64, 2**22 // vocab_size)
    loss = sum(F.cross_entropy(output_layer(x[i:i + rows]), targets[i:i + rows], reduction="sum")
               for i in range(0, max(1, len(targets)), rows))  # one empty slice if none count: a loss of 0
    return loss / max(1, len(targets))


def new_kv_cache(config: GPTConfig, batch_size: int, device, dtype=torch.float32) -> dict:
    """Room for the keys and values of every layer over the whole context; pos: tokens in it."""
    shape = (config.n_layer, batch_size, config.n_head, config.block_size, config.n_embd // config.n_head)
    return {"k": torch.zeros(shape, device=device, dtype=dtype), "v": torch.zeros(shape, device=device, dtype=dtype), "pos": 0}
