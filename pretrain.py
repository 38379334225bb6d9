"""
Pretrain a small GPT on raw text (文字接龍: predict the next token of any text).

    python pretrain.py                      # the built-in world data, prepared on first use (and after an update)
    python pretrain.py --dataset=mytext     # your own, from python data/prepare.py
    python pretrain.py --resume             # continue a stopped run
    torchrun --standalone --nproc_per_node=2 pretrain.py    # data-parallel: 2 processes (CPU or GPUs)

Writes out/pretrain/ckpt.pt (weights, vocabulary, optimizer state: everything to resume or
fine-tune) and out/pretrain/log.jsonl (every step and every validation).
"""
from __future__ import annotations

import json
import math
from pathlib import Path

from cli import DEVICE, DURATION, UserError, parse_args, run

OPTIONS = {
    # data and output
    "dataset": ("world", "a dataset name under data/ or a path to a prepared dataset folder"),
    "out_dir": ("out/pretrain", "where ckpt.pt and log.jsonl go"),
    "resume": (False, "continue the run saved in out_dir"),
    "overwrite": (False, "start a new run even though out_dir holds one (it is replaced)"),
    # model
    "n_layer": (4, "transformer blocks", "[1, inf)"),
    "n_head": (4, "attention heads", "[1, inf)"),
    "n_embd": (256, "width of the residual stream", "[1, inf)"),
    "block_size": (256, "context length in tokens (a chat of six short turns fits in 256)", "[1, inf)"),
    "dropout": (0.0, "dropout rate (0 for pretraining a small model on plenty of data)", "[0, 1)"),
    # the NanoGPT speedrun's changes to GPT-2, on but the logit cap (=false turns one off): docs/quality.md measures them
    "rope": (True, "rotary position embeddings instead of a learned position table"),
    "qk_norm": (True, "RMS-normalise queries and keys per head"),
    "relu2": (True, "relu(x)^2 in the MLP instead of GELU"),
    "zero_init": (True, "projections into the residual stream start at zero"),
    "untied": (False, "an output layer of its own, not tied to the token embedding"),
    "logit_cap": (0.0, "squash logits into (-cap, cap) with cap * tanh(logits / cap) (0: off; the NanoGPT speedrun "
                       "uses 30, which gained nothing at equal time on any corpus here: docs/quality.md step 29)", "[0, inf)"),
    # optimisation
    "batch_size": (8, "sequences per micro-batch", "[1, inf)"),
    "gradient_accumulation_steps": (1, "micro-batches per optimizer step", "[1, inf)"),
    "max_iters": (2400, "optimizer steps", "[1, inf)"),
    "time": ("", "train for this long instead (90s, 10m, 1.5h): the step count is fitted from the first steps' time",
             DURATION),
    "learning_rate": (2e-3, "peak learning rate", "(0, inf)"),
    "min_lr": (2e-4, "learning rate at the end of the cosine decay", "[0, inf)"),
    "warmup_iters": (50, "steps of linear warm-up", "[0, inf)"),
    "weight_decay": (0.1, "weight decay on matrices (AdamW's, and Muon's)", "[0, inf)"),
    "muon": (True, "Muon for the blocks' matrices (AdamW for the rest)"),
    "muon_lr_scale": (1.0, "Muon's learning rate as a multiple of --learning_rate (1: its update the size of AdamW's)",
                      "(0, inf)"),
    "beta2": (0.99, "AdamW beta2", "[0, 1)"),
    "grad_clip": (1.0, "clip the gradient norm to this (0: off)", "[0, inf)"),
    # evaluation, system
    "eval_interval": (100, "steps between validations (and checkpoints)", "[1, inf)"),
    "eval_iters": (10, "batches per validation estimate", "[1, inf)"),
    "seed": (1337, "random seed for initialisation and batches"),
    "device": ("auto", "auto (CUDA if present, else CPU), cpu, cuda, cuda:1, ...", DEVICE),
    "dtype": ("auto", "auto (bfloat16 where the hardware supports it, else float32), bfloat16, float32",
              ("auto", "bfloat16", "float32")),
    "threads": (0, "CPU threads for torch (0: torch's default, one per core)", "[0, 1024]"),
}
MODEL_KEYS = ("n_layer", "n_head", "n_embd", "block_size", "dropout", "rope", "qk_norm", "relu2", "zero_init",
              "untied", "logit_cap")
DATA_DIR = Path(__file__).resolve().parent / "data"


def dataset_folder(dataset: str, resuming: bool = False) -> Path:
    """A name under data/ or a path. The built-in world is generated on first use, and again when
    the code that writes it has changed since (unless resuming, which must read what it began on;
    a world made with options of one's own is kept)."""
    folder = Path(dataset) if ("/" in dataset or Path(dataset).is_dir()) else DATA_DIR / dataset
    if dataset == "world":
        from data.world.prepare import make_default_world_if_needed
        make_default_world_if_needed(folder, resuming)
    missing = [f for f in ("train.bin", "val.bin", "meta.json") if not (folder / f).exists()]
    if missing:
        where = f"--out_dir={folder}" if folder.parent != DATA_DIR else f"--name={folder.name}"
        raise UserError(f"dataset {dataset!r} is not prepared ({folder} lacks {', '.join(missing)}). "
                        f"Prepare it first: python data/prepare.py YOUR_TEXT_FILES {where}")
    return folder


def load_dataset(config: dict, checkpoint: dict | None, out_dir: Path):
    """The dataset's folder, its meta.json, and its two splits as token arrays read from disk as
    needed (np.memmap), checked to fit the run. -> (folder, meta, train tokens, val tokens)"""
    from data.prepare import read_tokens
    folder = dataset_folder(config["dataset"], resuming=checkpoint is not None)
    meta = json.loads((folder / "meta.json").read_text())
    if checkpoint is not None and checkpoint["vocab"] != meta["vocab"]:
        raise UserError(f"dataset {config['dataset']} has another vocabulary than the checkpoint in {out_dir}: "
                        "resume on the dataset the run started with")
    splits = [read_tokens(folder / f"{split}.bin") for split in ("train", "val")]
    for split, data in zip(("train", "val"), splits):
        if len(data) <= config["block_size"] + 1:
            raise UserError(f"the {split} split of {config['dataset']} has {len(data)} tokens, too few for "
                            f"--block_size={config['block_size']}: use a smaller --block_size or more text")
    return folder, meta, *splits


def check_shape(config: dict) -> None:
    """The model's options that must fit together, refused in one line each."""
    head_size, rest = divmod(config["n_embd"], config["n_head"])
    if rest:
        raise UserError(f"--n_embd={config['n_embd']} must be a multiple of --n_head={config['n_head']} "
                        "(each head takes an equal share of the width)")
    if config["rope"] and head_size % 2:
        raise UserError(f"--rope turns pairs of channels: each head's width (--n_embd / --n_head = {head_size}) must be even")


def main() -> None:
    config, _, typed = parse_args(OPTIONS, "python pretrain.py [--key=value ...]", __doc__)
    import torch
    from model import GPT, GPTConfig
    from machine import choose_device, choose_dtype, init_distributed, leave_distributed, set_threads
    from optimizer import make_optimizer
    from trainer import TrainSettings, batch_generator, restore, start_or_resume, text_windows, train, writable_folder

    out_dir = Path(config["out_dir"])
    if "time" in typed and ("max_iters" in typed or config["resume"]):
        raise UserError("--time sets the length of a new run: give it alone, without --max_iters or --resume "
                        "(a resumed run keeps the step count its --time fitted; extend it with --max_iters)")
    before_options = {**{k: getattr(GPTConfig, k) for k in MODEL_KEYS}, "muon": False,  # a run saved before the speedrun's
                      "muon_lr_scale": OPTIONS["muon_lr_scale"][0]}  # options was GPT-2's (its sizes are always saved)
    config, checkpoint = start_or_resume(config, typed, out_dir, MODEL_KEYS + ("muon", "muon_lr_scale"), kinds=("pretrain",),
                                         before_options=before_options)
    if config["time"] and checkpoint is None:
        config["max_iters"] = 10**9  # until fitted to the budget after the first steps
    check_shape(config)
    writable_folder(out_dir)

    folder, meta, train_data, val_data = load_dataset(config, checkpoint, out_dir)
    T, B = config["block_size"], config["batch_size"]

    rank, world, config["device"] = init_distributed(choose_device(config["device"]))
    say = print if rank == 0 else (lambda *args, **kwargs: None)  # one voice when several processes run
    config["dtype"] = choose_dtype(config["dtype"], config["device"])
    set_threads(config["threads"])
    torch.manual_seed(config["seed"])

    def get_batch(split: str, step: int, micro_step: int):
        x, y = text_windows(train_data if split == "train" else val_data, B, T,
                            batch_generator(config["seed"], split, step, micro_step))
        return x.to(config["device"]), y.to(config["device"])

    vocab_rows = math.ceil(meta["vocab_size"] / 64) * 64  # a multiple of 64 suits the matmul kernels
    model_config = GPTConfig(**checkpoint["model_config"]) if checkpoint else \
        GPTConfig(vocab_size=vocab_rows, **{k: config[k] for k in MODEL_KEYS})  # a resumed run keeps its own
    model = GPT(model_config).to(config["device"])
    optimizer = make_optimizer(model, config["learning_rate"], config["weight_decay"], config["beta2"], config["muon"],
                               config["muon_lr_scale"], config["dtype"])
    start_step = restore(model, optimizer, checkpoint) if checkpoint is not None else 0

    tokens_per_step = B * T * config["gradient_accumulation_steps"] * world
    say(f"dataset {folder}: {len(train_data):,} train / {len(val_data):,} val tokens, vocabulary {meta['vocab_size']:,}")
    say(f"model: {model.num_params(non_embedding=False) / 1e6:.2f}M parameters ({config['n_layer']} layers, {config['n_head']} heads, "
        f"{config['n_embd']} wide, context {T}); {config['device']}, {config['dtype']}; "
        f"{tokens_per_step:,} tokens per step, "
        + (f"as many steps as fit in {config['time']:g} s" if config["time"] and checkpoint is None else f"{config['max_iters']:,} steps")
        + (f", {world} processes" if world > 1 else "") + (f", resuming at step {start_step}" if start_step else ""))
    extra = {"model_config": model_config.__dict__, "vocab": meta["vocab"], "kind": "pretrain", "dataset": str(folder.resolve()),
             "config": config}
    losses = train(model, optimizer, get_batch, TrainSettings.of(config), out_dir, start_step, extra)
    leave_distributed()  # the other processes end here

    say(f"done. validation loss {losses.get('val', float('nan')):.3f} "
        f"(a uniform guess over the vocabulary scores {math.log(meta['vocab_size']):.3f})")
    say(f"checkpoint: {out_dir / 'ckpt.pt'}")
    say("next: python sample.py --raw --prompt \"臺灣最高的山是\"    (continue text with the base model)")
    say("      python finetune.py --lora                      (teach it to answer questions)")


if __name__ == "__main__":
    run(main)
