"""
Talk to the model: it writes one token at a time until it writes [END].

    python sample.py                                   # chat with the newest fine-tuned model
    python sample.py --prompt "台灣最高的山是哪座？"      # one answer, then exit
    echo "你是誰？" | python sample.py                   # one reply per input line
    python sample.py --raw --prompt "臺灣最高的山是"      # 文字接龍 with the pretrained model

In the chat, /reset forgets the conversation and /quit (or Ctrl-D) leaves; Ctrl-C during a
reply stops that reply only. --show_tokens prints each generated token, as the lecture draws it:
USER:台灣最高的山是哪座？AI:玉 -> 山 -> [END].
"""
from __future__ import annotations

import sys
from pathlib import Path

import torch

from checkpoint import load_checkpoint, load_model
from cli import DEVICE, UserError, parse_args, run
from lora import load_adapted_model
from model import new_kv_cache
from tokenizer import END, chat_fits, utf8_pending
from trainer import choose_device, choose_dtype

OPTIONS = {
    "ckpt": ("", "checkpoint to load (default: the newest fine-tuned model; with --raw, out/pretrain/ckpt.pt)"),
    "adapter": ("", "a LoRA adapter to put on its base checkpoint (the base it names, or --ckpt)"),
    "raw": (False, "continue text with no chat template (for a pretrained-only model)"),
    "prompt": ("", "answer (or continue) this one text and exit"),
    "temperature": (0.0, "0: always the most likely token (greedy); higher: more varied", "[0, inf)"),
    "top_k": (0, "sample only among the k most likely tokens (0: all)", "[0, inf)"),
    "top_p": (1.0, "sample only among the most likely tokens whose probabilities sum to p (1: all)", "(0, 1]"),
    "max_new_tokens": (100, "stop a reply after this many tokens if [END] has not come", "[1, inf)"),
    "seed": (1337, "random seed: the same seed gives the same reply"),
    "show_tokens": (False, "print every generated token id and its text, one per line"),
    "device": ("auto", "auto (CUDA if present, else CPU), cpu, cuda, ...", DEVICE),
    "dtype": ("auto", "weights for generation: int8 (linear layers; CPUs with bf16), bfloat16, float32, or auto: "
                      "int8 on a CPU with bf16, bfloat16 on a GPU with it, else float32",
              ("auto", "int8", "bfloat16", "float32")),
}
FINE_TUNED = ["out/lora/adapter.pt", "out/sft/ckpt.pt"]  # where finetune.py writes; the newest is loaded
PRETRAINED = "out/pretrain/ckpt.pt"


def generate(*args, **options):
    """Yield new token ids one at a time (generate_steps without the logits)."""
    for token, _ in generate_steps(*args, **options):
        yield token


def generate_steps(model, ids: list[int], max_new_tokens: int, temperature: float = 0.0, top_k: int = 0,
                   top_p: float = 1.0, stop_id: int | None = None, generator=None, use_cache: bool = True,
                   vocab_size: int | None = None, tokenizer=None, chat: bool = True, unfinished: bytes = b""):
    """Yield (new token id, the logits it was chosen from) one step at a time, stopping after
    stop_id or max_new_tokens. vocab_size: the tokenizer's; the embedding rows beyond it only
    pad the matrix, never chosen. With a tokenizer, each step may pick only what
    tokenizer.allowed_next permits (the logits of the rest are -inf): the reply stays valid
    UTF-8 and holds no special token but the chat's [END] (or raw text's <|doc|>). unfinished:
    the bytes of a character the end of ids begins (a reply continued from a chosen token).

    With the KV cache each step feeds only the newest token. When the context is full the
    oldest quarter of it is dropped and the rest read again (positions are absolute, so the
    cache cannot simply shift). use_cache=False recomputes the whole window every step, with the
    same sliding, to check the cache against."""
    block = model.config.block_size
    keep = block - block // 4
    ids = list(ids)
    start = max(0, len(ids) - keep) if len(ids) > block else 0
    device = next(model.parameters()).device
    cache = new_kv_cache(model.config, 1, device, next(model.parameters()).dtype) if use_cache else None
    pending = ids[start:]  # the tokens to feed next
    vocab_size = tokenizer.vocab_size if tokenizer is not None else vocab_size
    with torch.no_grad():
        for _ in range(max_new_tokens):
            x = torch.tensor([pending if use_cache else ids[start:]], device=device)
            logits, _ = model(x, kv_cache=cache)
            logits = logits[0, :vocab_size]
            if tokenizer is not None:
                allowed = torch.from_numpy(tokenizer.allowed_next(unfinished, chat)).to(device)
                logits = logits.masked_fill(~allowed, float("-inf"))
            token = pick_token(logits, temperature, top_k, top_p, generator)
            yield token, logits
            if token == stop_id:
                return
            if tokenizer is not None:
                unfinished = utf8_pending(unfinished + tokenizer.token_bytes[token])
            ids.append(token)
            pending = [token]
            if len(ids) - start > block:  # full: slide the window
                start = len(ids) - keep
                pending = ids[start:]
                if cache is not None:
                    cache["pos"] = 0


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
    """Every Linear (the output layer too; the input embedding stays as it is) to Int8Linear."""
    for module in list(model.modules()):
        for name, child in list(module.named_children()):
            if isinstance(child, torch.nn.Linear):
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


def pick_token(logits, temperature: float, top_k: int, top_p: float, generator) -> int:
    if temperature <= 0:
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


def find_model(config: dict) -> tuple[str, str]:
    """-> (checkpoint, adapter): what the options name, else the newest fine-tuned model."""
    if config["adapter"] or config["ckpt"] or config["raw"]:
        return config["ckpt"] or ("" if config["adapter"] else PRETRAINED), config["adapter"]
    found = sorted((p for p in FINE_TUNED if Path(p).exists()), key=lambda p: Path(p).stat().st_mtime)
    if not found:
        hint = " (python sample.py --raw continues text with the pretrained model)" if Path(PRETRAINED).exists() else ""
        raise UserError(f"no fine-tuned model found ({', '.join(FINE_TUNED)}): run python finetune.py --lora first, "
                        f"or give one with --ckpt{hint}")
    newest = found[-1]
    return ("", newest) if newest.endswith("adapter.pt") else (newest, "")


def load_for_generation(ckpt: str, adapter: str, device: str, dtype: str = "auto"):
    """A checkpoint (or an adapter on its base) ready to generate. -> (model, tokenizer, description)"""
    if adapter:
        model, tokenizer, _ = load_adapted_model(adapter, ckpt or None, device)
        path = f"{adapter} (LoRA) on {ckpt or 'its base'}"
    else:
        model, tokenizer = load_model(load_checkpoint(ckpt, option="--ckpt"), device)
        path = ckpt
    n_params = model.num_params()
    model = for_generation(model, device, dtype)
    weights = str(next(model.parameters()).dtype).removeprefix("torch.")
    weights = f"int8 linear layers, {weights}" if any(isinstance(m, Int8Linear) for m in model.modules()) else weights
    return model, tokenizer, f"{path} ({n_params / 1e6:.2f}M parameters, {weights})"


def main() -> None:
    config, _, _ = parse_args(OPTIONS, "python sample.py [--prompt=TEXT] [--raw] [--key=value ...]", __doc__)

    ckpt, adapter = find_model(config)
    model, tokenizer, description = load_for_generation(ckpt, adapter, choose_device(config["device"]), config["dtype"])
    generator = torch.Generator().manual_seed(config["seed"])
    block = model.config.block_size
    interactive = not config["prompt"] and sys.stdin.isatty()
    print(f"loaded {description}" + (". /reset starts over, /quit leaves." if interactive else ""), file=sys.stderr)

    def reply(prompt_ids: list[int]) -> str:
        """Stream one reply to the terminal; return its text."""
        decode, pieces, token, unfinished = tokenizer.stream_decoder(), [], None, b""
        chat = not config["raw"]
        try:
            for i, token in enumerate(generate(model, prompt_ids, config["max_new_tokens"], config["temperature"],
                                               config["top_k"], config["top_p"], END if chat else None, generator,
                                               tokenizer=tokenizer, chat=chat)):
                if token == END:
                    break
                piece = decode(token)
                if not "".join(pieces).strip():  # the space that starts an English reply (see encode_turn)
                    piece = piece.lstrip(" ")
                pieces.append(piece)
                if config["show_tokens"]:  # the UTF-8 rule: how many ids this step could pick from
                    allowed = int(tokenizer.allowed_next(unfinished, chat).sum())
                    print(f"  {i + 1:>3}  id {token:>5}  {tokenizer.token_bytes[token]!r:<16} {piece!r:<8} "
                          f"(allowed: {allowed:,} of {tokenizer.vocab_size:,}"
                          + (f", after {unfinished!r} only its continuation bytes)" if unfinished else ")"), flush=True)
                    unfinished = utf8_pending(unfinished + tokenizer.token_bytes[token])
                else:
                    print(piece, end="", flush=True)
        except KeyboardInterrupt:
            print(" [stopped]", end="")
        if config["show_tokens"] and chat:
            print("  [END]" if token == END else "  (no [END] within --max_new_tokens)")
        print(flush=True)
        return "".join(pieces)

    def too_long(n_tokens: int) -> str:
        return (f"the message is {n_tokens} tokens with the template; this model's context holds {block} "
                "and needs room for the reply. Shorten it")

    if config["raw"]:
        texts = [config["prompt"]] if config["prompt"] else ([] if interactive else sys.stdin.read().splitlines())
        for text in texts or [""]:
            ids = tokenizer.encode_document(text)
            if len(ids) >= block:
                raise UserError(too_long(len(ids)))
            if not config["show_tokens"]:
                print(text, end="")
            reply(ids)
        return

    history: list[tuple[str, str]] = []

    def answer(message: str) -> None:
        ids, dropped = tokenizer.chat_prompt(history, message, block, config["max_new_tokens"])
        if dropped:
            del history[:dropped]
            print(f"(the context is full: the oldest {'turn is' if dropped == 1 else f'{dropped} turns are'} forgotten)",
                  file=sys.stderr)
        if not chat_fits(ids, block, config["max_new_tokens"]):
            if not interactive:
                raise UserError(too_long(len(ids)))
            print(f"({too_long(len(ids))})")
            return
        history.append((message, reply(ids)))

    if config["prompt"]:
        answer(config["prompt"])
        return
    # the chat: typed at a terminal, or one message per line of piped input (one reply per line)
    piped = None if interactive else iter(sys.stdin.read().splitlines())
    while True:
        try:
            message = input("USER: ") if interactive else next(piped)
        except (EOFError, KeyboardInterrupt, StopIteration):
            if interactive:
                print()
            return
        if message.strip() == "/quit":
            return
        if message.strip() == "/reset":
            history.clear()
            print("(conversation cleared)")
            continue
        if message.strip():
            if interactive:
                print("AI: ", end="", flush=True)
            answer(message)

if __name__ == "__main__":
    run(main)
