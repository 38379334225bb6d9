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

from cli import DEVICE, UserError, parse_args, run, text_lines
from generation import generate, load_for_generation
from machine import choose_device
from tokenizer import END, chat_fits, utf8_pending

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


def stream_reply(model, tokenizer, prompt_ids: list[int], config: dict, generator) -> str:
    """Write one reply to the terminal as it is generated (or, with --show_tokens, each token
    and how many the UTF-8 rule allowed there); Ctrl-C stops it. -> its text"""
    decode, pieces, token, unfinished = tokenizer.stream_decoder(), [], None, b""
    chat = not config["raw"]
    try:
        for i, token in enumerate(generate(model, prompt_ids, config["max_new_tokens"], config["temperature"],
                                           config["top_k"], config["top_p"], END if chat else None, generator,
                                           tokenizer=tokenizer, chat=chat)):
            if token == END:
                break
            piece = decode(token)
            if chat and not "".join(pieces).strip():  # the space that starts an English reply (see encode_turn)
                piece = piece.lstrip(" ")
            pieces.append(piece)
            if config["show_tokens"]:
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


def too_long(n_tokens: int, block: int, chat: bool = True) -> str:
    return (f"the {'message is' if chat else 'text is'} {n_tokens} tokens{' with the template' if chat else ''}; this "
            f"model's context holds {block} and needs room for the {'reply' if chat else 'continuation'}. Shorten it")


def answer(history: list[tuple[str, str]], message: str, model, tokenizer, config: dict, generator,
           interactive: bool) -> None:
    """One turn of the chat: the reply to message after history, which gains the turn (and loses
    its oldest turns when the context is full)."""
    block = model.config.block_size
    ids, dropped = tokenizer.chat_prompt(history, message, block, config["max_new_tokens"])
    if dropped:
        del history[:dropped]
        print(f"(the context is full: the oldest {'turn is' if dropped == 1 else f'{dropped} turns are'} forgotten)",
              file=sys.stderr)
    if not chat_fits(ids, block, config["max_new_tokens"]):
        if not interactive:
            raise UserError(too_long(len(ids), block))
        print(f"({too_long(len(ids), block)})")
        return
    history.append((message, stream_reply(model, tokenizer, ids, config, generator)))


def piped_lines() -> list[str]:
    """The lines piped in: each a message to answer (or, with --raw, a text to continue)."""
    if sys.stdin is None:  # started with its input closed
        return []
    return text_lines(sys.stdin.buffer.read(), "the piped input")


def main() -> None:
    config, _, typed = parse_args(OPTIONS, "python sample.py [--prompt=TEXT] [--raw] [--key=value ...]", __doc__)
    if "prompt" in typed and not config["prompt"].strip() and not config["raw"]:
        raise UserError("--prompt is empty: give the message to answer, or leave --prompt out to chat")
    ckpt, adapter = find_model(config)
    model, tokenizer, description = load_for_generation(ckpt, adapter, choose_device(config["device"]), config["dtype"])
    generator = torch.Generator().manual_seed(config["seed"])
    interactive = not config["prompt"] and sys.stdin is not None and sys.stdin.isatty()
    print(f"loaded {description}" + (". /reset starts over, /quit leaves." if interactive else ""), file=sys.stderr)
    if config["raw"]:  # 文字接龍: continue each text
        texts = [config["prompt"]] if config["prompt"] else ([] if interactive else piped_lines())
        for text in texts or [""]:
            ids = tokenizer.encode_document(text)
            if len(ids) >= model.config.block_size:
                raise UserError(too_long(len(ids), model.config.block_size, chat=False))
            if not config["show_tokens"]:
                print(text, end="")
            stream_reply(model, tokenizer, ids, config, generator)
        return
    history: list[tuple[str, str]] = []
    if config["prompt"]:
        answer(history, config["prompt"], model, tokenizer, config, generator, interactive)
        return
    # the chat: typed at a terminal, or one message per line of piped input (one reply per line)
    piped = None if interactive else iter(piped_lines())
    while True:
        try:
            message = input("USER: ") if interactive else next(piped)
        except (EOFError, KeyboardInterrupt, StopIteration):
            if interactive:
                print()
            return
        except UnicodeDecodeError:  # a terminal not set to UTF-8
            print("(that line is not UTF-8 text: set the terminal to UTF-8 and type it again)")
            continue
        if message.strip() == "/quit":
            return
        if message.strip() == "/reset":
            history.clear()
            print("(conversation cleared)")
            continue
        if message.strip():
            if interactive:
                print("AI: ", end="", flush=True)
            answer(history, message, model, tokenizer, config, generator, interactive)


if __name__ == "__main__":
    run(main)
