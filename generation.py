"""
Generation: the model writes one token at a time. The one routine here (generate_steps, with
the KV cache) serves the chat (sample.py), the web page and API (serve.py), the evaluation
(evaluate.py, batched and greedy) and bench.py; the weights it runs with (bf16, or int8 linear
layers where the CPU has bf16) and the sampling choice (greedy, temperature, top-k, top-p).
"""
from __future__ import annotations

import numpy as np
import torch

from checkpoint import load_checkpoint, load_model
from cli import UserError
from lora import load_adapted_model
from machine import choose_dtype
from model import new_kv_cache
from tokenizer import END, utf8_pending


def generate(model, ids: list[int], max_new_tokens: int, *settings, **options):
    """Yield the new token ids of one prompt, one at a time (generate_steps' settings)."""
    for tokens, _ in generate_steps(model, [ids], max_new_tokens, *settings, **options):
        yield tokens[0]


def generate_steps(model, prompts: list[list[int]], max_new_tokens: int, temperature: float = 0.0, top_k: int = 0,
                   top_p: float = 1.0, stop_id: int | None = None, generator=None, use_cache: bool = True,
                   vocab_size: int | None = None, tokenizer=None, chat: bool = True, unfinished: bytes = b""):
    """The one generation routine. prompts: one or more prompts of the same length, generated
    together as a batch. Yields, one step at a time, (the new token of each prompt, the logits
    they were chosen from (prompts, vocabulary)), until every prompt has written stop_id or
    max_new_tokens have been written (a prompt that has stopped goes on, and its tokens are
    not the caller's concern). vocab_size: the tokenizer's; the embedding rows beyond it only
    pad the matrix, never chosen. With a tokenizer, each step may pick only what
    tokenizer.allowed_next permits (the logits of the rest are -inf): the reply stays valid
    UTF-8 and holds no special token but the chat's [END] (or raw text's <|doc|>). unfinished:
    the bytes of a character the prompts' end begins (a reply continued from a chosen token).

    With the KV cache each step feeds only the newest tokens. When the context is full the
    oldest quarter of it is dropped and the rest read again (positions are absolute, so the
    cache cannot simply shift). use_cache=False recomputes the whole window every step, with the
    same sliding, to check the cache against."""
    block = model.config.block_size
    keep = block - block // 4
    rows = [list(p) for p in prompts]
    start = max(0, len(rows[0]) - keep) if len(rows[0]) > block else 0
    device = next(model.parameters()).device
    cache = new_kv_cache(model.config, len(rows), device, next(model.parameters()).dtype) if use_cache else None
    pending = [r[start:] for r in rows]  # the tokens to feed next
    unfinished = [unfinished] * len(rows)
    stopped = [False] * len(rows)
    vocab_size = tokenizer.vocab_size if tokenizer is not None else vocab_size
    with torch.no_grad():
        for _ in range(max_new_tokens):
            x = torch.tensor(pending if use_cache else [r[start:] for r in rows], device=device)
            logits, _ = model(x, kv_cache=cache)
            logits = logits[:, :vocab_size]
            if tokenizer is not None:
                allowed = np.stack([tokenizer.allowed_next(u, chat) for u in unfinished])
                logits = logits.masked_fill(~torch.from_numpy(allowed).to(device), float("-inf"))
            tokens = [pick_token(row_logits, temperature, top_k, top_p, generator) for row_logits in logits]
            yield tokens, logits
            stopped = [s or t == stop_id for s, t in zip(stopped, tokens)]
            if all(stopped):
                return
            if tokenizer is not None:
                unfinished = [utf8_pending(u + tokenizer.token_bytes[t]) or b"" for u, t in zip(unfinished, tokens)]
            for r, t in zip(rows, tokens):
                r.append(t)
            pending = [[t] for t in tokens]
            if len(rows[0]) - start > block:  # full: slide the window
                start = len(rows[0]) - keep
                pending = [r[start:] for r in rows]
                if cache is not None:
                    cache["pos"] = 0


def greedy_replies(model, tokenizer, prompts: list[list[int]], max_new_tokens: int = 32, batch_size: int = 64) -> list[str]:
    """The model's greedy reply to each prompt (ids ending in AI:), for evaluation: prompts of
    equal length share a batch (no padding needed), batch_size at a time."""
    replies: list[list[int]] = [[] for _ in prompts]
    for length in sorted({len(p) for p in prompts}):
        group = [i for i, p in enumerate(prompts) if len(p) == length]
        for first in range(0, len(group), batch_size):
            chunk = group[first:first + batch_size]
            for tokens, _ in generate_steps(model, [prompts[i] for i in chunk], max_new_tokens, stop_id=END,
                                            tokenizer=tokenizer):
                for i, token in zip(chunk, tokens):
                    if replies[i][-1:] != [END]:
                        replies[i].append(token)
    return [tokenizer.decode([t for t in r if t != END]).strip() for r in replies]


def pick_token(logits, temperature: float, top_k: int, top_p: float, generator) -> int:
    if temperature < 1e-4:  # greedy; colder than this, logits / temperature would overflow fp32
        return int(logits.argmax())
    logits = logits / temperature
    if top_k > 0:
        kth = torch.topk(logits, min(top_k, logits.numel())).values[-1]
        logits = logits.masked_fill(logits < kth, float("-inf"))
    if top_p < 1.0:
        sorted_logits, order = torch.sort(logits, descending=True)
        cumulative = sorted_logits.softmax(-1).cumsum(-1)
        drop = cumulative - sorted_logits.softmax(-1) > top_p  # keep the smallest set reaching p
        logits = logits.masked_fill(torch.zeros_like(drop).scatter(0, order, drop), float("-inf"))
    return int(torch.multinomial(logits.softmax(-1), 1, generator=generator))


class Int8Linear(torch.nn.Module):
    """A Linear for generation only, weights stored as int8 with one scale per output row.
    At batch 1 every token reads every weight, so generation is bound by memory bandwidth:
    a quarter of the bytes of fp32 makes it about twice as fast, with nearly the same logits."""

    def __init__(self, linear: torch.nn.Linear):
        super().__init__()
        weight = linear.weight.detach().float()
        scale = weight.abs().amax(dim=1).clamp(min=1e-8) / 127
        self.register_buffer("weight_int8", torch.round(weight / scale[:, None]).to(torch.int8))
        self.register_buffer("scale", scale.to(torch.bfloat16))
        self.bias = linear.bias

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        flat = x.reshape(-1, x.shape[-1]).to(torch.bfloat16)
        y = torch._weight_int8pack_mm(flat, self.weight_int8, self.scale).to(x.dtype)
        y = y.reshape(*x.shape[:-1], -1)
        return y if self.bias is None else y + self.bias


def quantize_int8(model: torch.nn.Module) -> torch.nn.Module:
    """Every Linear (the output layer too; the input embedding stays as it is) to Int8Linear,
    but those whose input width is not a multiple of 16: the kernel reads the input in blocks of
    16, and other widths give wrong numbers or crash (torch 2.13 on a CPU); they stay as they are."""
    for module in list(model.modules()):
        for name, child in list(module.named_children()):
            if isinstance(child, torch.nn.Linear) and child.in_features % 16 == 0:
                setattr(module, name, Int8Linear(child))
    return model


def for_generation(model: torch.nn.Module, device: str, dtype: str = "auto") -> torch.nn.Module:
    """The model as generation runs it. At batch 1 every new token reads every weight, so speed
    follows the bytes read: bf16 weights are half of fp32 (and need no casts per layer, as autocast
    does), int8 linear layers a quarter, at next to no cost in answers (experiment.py measures it)."""
    native = choose_dtype("auto", device)  # bfloat16 where the hardware computes it
    int8_ok = device.startswith("cpu") and native == "bfloat16"
    if dtype == "int8" and not int8_ok:
        raise UserError("--dtype=int8 is for CPUs with bf16 support (AVX-512 BF16 or AMX); this device has none")
    if dtype == "int8" or (dtype == "auto" and int8_ok):
        return quantize_int8(model).to(torch.bfloat16)  # activations in bf16, as the int8 kernel takes them
    return model.to(torch.bfloat16 if (native if dtype == "auto" else dtype) == "bfloat16" else torch.float32)


def load_for_generation(ckpt: str, adapter: str, device: str, dtype: str = "auto"):
    """A checkpoint (or an adapter on its base) ready to generate. -> (model, tokenizer, description)"""
    if adapter:
        model, tokenizer, _ = load_adapted_model(adapter, ckpt or None, device)
        path = f"{adapter} (LoRA) on {ckpt or 'its base'}"
    else:
        model, tokenizer = load_model(load_checkpoint(ckpt, option="--ckpt"), device)
        path = ckpt
    n_params = model.num_params(non_embedding=False)  # every weight, as the README counts them
    model = for_generation(model, device, dtype)
    weights = str(next(model.parameters()).dtype).removeprefix("torch.")
    int8, plain = (sum(isinstance(m, kind) for m in model.modules()) for kind in (Int8Linear, torch.nn.Linear))
    weights = f"int8 linear layers{f' ({int8} of {int8 + plain})' if plain else ''}, {weights}" if int8 else weights
    return model, tokenizer, f"{path} ({n_params / 1e6:.2f}M parameters, {weights})"
