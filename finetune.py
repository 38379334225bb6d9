"""
Instruction fine-tuning: teach a pretrained model to answer, on USER/AI examples, with the loss
on the AI's reply (and its [END]) only. 「關鍵是用 Pre-train 的參數初始化」: it starts from the
pretrained weights, fully (every weight trains) or through LoRA (the weights stay frozen and a
small adapter learns the change). Each batch also replays a few rows of the base's pretraining
text, every token a target, so that the model keeps continuing what it read (--replay).

    python finetune.py                         # full fine-tuning -> out/sft/ckpt.pt
    python finetune.py --lora                  # LoRA -> out/lora/adapter.pt (about a megabyte)
    python finetune.py --init_from=scratch     # the same from random weights: the baseline
    python finetune.py --data=mine.jsonl       # your own examples

Instruction files are JSONL, one example per line (instructions.py reads them).
With the built-in world data, the run ends with exact-match accuracy on held-out questions:
questions about people and places that fine-tuning never mentions, only pretraining did.
"""
from __future__ import annotations

import json
from functools import partial
from pathlib import Path

import torch

from checkpoint import load_checkpoint, load_model, save_checkpoint
from cli import DEVICE, UserError, parse_args, run
from evaluate import exact_match, read_questions
from instructions import Batches, load_instructions
from lora import add_lora, lora_state_dict, merged_checkpoint, weights_fingerprint
from machine import choose_device, choose_dtype, init_distributed, leave_distributed, set_threads
from model import GPT
from optimizer import make_optimizer
from trainer import TrainSettings, restore, start_or_resume, train, writable_folder

# from pretrained weights: each question about as often as 300 steps gave the smaller data before 2026-12-03
AUTO_STEPS = {"pretrained": 600, "scratch": 1200}  # (600 since round 66, with 15% more examples: docs/notebook.md)
AUTO_REPLAY = {"full": 1 / 8, "lora": 1 / 4}  # rows of pretraining text per example: 4 and 8 of 32, round 57 (docs/notebook.md)
OPTIONS = {
    "base": ("out/pretrain/ckpt.pt", "the pretrained checkpoint to start from"),
    "init_from": ("pretrained", "pretrained: start from the base's weights; scratch: random weights of the same shape",
                  ("pretrained", "scratch")),
    "data": ("", "instruction JSONL file(s), comma-separated (default: data/world/sft.jsonl)"),
    "eval": ("", "question/answer JSONL for exact-match accuracy (default with the world data: data/world/eval_heldout.jsonl)"),
    "out_dir": ("", "output folder (default: out/sft, out/lora, or out/sft_scratch)"),
    "overwrite": (False, "replace what out_dir holds"),
    "resume": (False, "continue the run saved in out_dir (stopped with Ctrl-C, or killed)"),
    "skip_bad_lines": (False, "leave out bad lines of the data (reported) instead of stopping"),
    "train_on_prompt": (False, "let the user's text count in the loss too (can help with little data and short replies)"),
    "val_fraction": (0.05, "share of the examples held out for validation loss", "[0, 1)"),
    "freeze_tables": ("output", "full fine-tuning from pretrained weights leaves these token tables as pretrained: none, "
                      "input (the token embedding), output (the output layer: the default since round 49, "
                      "docs/notebook.md) or both (the blocks alone learn); a tied model's one table is kept by any of them",
                      ("none", "input", "output", "both")),
    "freeze_blocks": (0, "full fine-tuning from pretrained weights also leaves the first N transformer blocks as pretrained "
                      "(those nearest the tokens; round 54, docs/notebook.md)", "[0, inf)"),
    "replay": ("auto", "rows of the base's pretraining text added to each training batch, every token a target, so "
               "that the model keeps continuing what it read (auto: one for every 8 examples of the batch with full "
               "fine-tuning, every 4 with LoRA, at least one: 4 and 8 at the default 32; none from random weights or "
               "where the base's text is not there; 0: off)", "auto or int [0, inf)"),
    # LoRA
    "lora": (False, "train a LoRA adapter instead of every weight"),
    "lora_rank": (16, "rank r of the update B A (16 since round 49: docs/notebook.md)", "[1, inf)"),
    "lora_alpha": (32.0, "the update is scaled by alpha / r", "(0, inf)"),
    "lora_dropout": (0.0, "dropout on the LoRA path's input (0: off, as in peft; it also saves time)", "[0, 1)"),
    "lora_targets": ("c_attn,c_proj,c_fc", "linear layers to adapt, by name ending (attention and MLP projections)"),
    "merge": (False, "with --lora: also write merged.pt, a plain checkpoint with the adapter folded in"),
    # optimisation
    "batch_size": (32, "examples per batch (batches are grouped by length: next to no padding)", "[1, inf)"),
    "gradient_accumulation_steps": (1, "batches per optimizer step", "[1, inf)"),
    "max_iters": ("auto", "optimizer steps (auto: 600 from pretrained weights; 1200 from scratch)",
                  "auto or int [1, inf)"),
    "learning_rate": ("auto", "peak learning rate (auto: 2e-4 for full fine-tuning, 2e-3 for LoRA and from scratch)",
                      "auto or float (0, inf)"),
    "min_lr": ("auto", "final learning rate (auto: a tenth of the peak)", "auto or float [0, inf)"),
    "warmup_iters": (50, "steps of linear warm-up", "[0, inf)"),
    "weight_decay": (0.0, "AdamW weight decay on matrices", "[0, inf)"),
    "beta2": (0.99, "AdamW beta2", "[0, 1)"),
    "grad_clip": (1.0, "clip the gradient norm to this (0: off)", "[0, inf)"),
    "dropout": (0.0, "dropout in the model's layers (full fine-tuning and LoRA alike)", "[0, 1)"),
    "eval_interval": (100, "steps between validations (and checkpoints)", "[1, inf)"),
    "eval_iters": (10, "batches per validation estimate", "[1, inf)"),
    "seed": (1337, "random seed"),
    "device": ("auto", "auto (CUDA if present, else CPU), cpu, cuda, ...", DEVICE),
    "dtype": ("auto", "auto (bfloat16 where supported, else float32), bfloat16, float32",
              ("auto", "bfloat16", "float32")),
    "threads": (0, "CPU threads for torch (0: one per core)", "[0, 1024]"),
}
WORLD = Path(__file__).resolve().parent / "data" / "world"
FIXED_ON_RESUME = ("base", "init_from", "lora", "lora_rank", "lora_alpha", "lora_targets", "freeze_tables", "freeze_blocks")
RUN_FILES = ("ckpt.pt", "log.jsonl", "eval.jsonl", "adapter.pt", "merged.pt")  # what a run writes in its out_dir
BEFORE_OPTIONS = {"freeze_tables": "none", "freeze_blocks": 0, "replay": 0}  # what runs saved before these options did


def settle_options(config: dict, typed: set[str]) -> tuple[dict, dict | None, Path]:
    """The run's settings: a resumed run's as saved, "auto" values worked out, paths checked
    before any work. -> (config, the checkpoint to resume or None, out_dir)"""
    default_dir = "out/lora" if config["lora"] else "out/sft_scratch" if config["init_from"] == "scratch" else "out/sft"
    out_dir = Path(config["out_dir"] or default_dir)
    config, checkpoint = start_or_resume(config, typed, out_dir, FIXED_ON_RESUME, kinds=("sft", "lora"),
                                         before_options=BEFORE_OPTIONS)
    scratch = config["init_from"] == "scratch"
    if config["freeze_blocks"] and (config["lora"] or scratch):
        raise UserError("--freeze_blocks keeps pretrained blocks as they are: it goes with full fine-tuning from pretrained "
                        "weights (leave out --lora and --init_from=scratch, or --freeze_blocks)")
    if config["replay"] not in ("auto", 0) and scratch:
        raise UserError("--replay shows the base's pretraining text again: from random weights that would be pretraining, "
                        "not the baseline (leave out --replay or --init_from=scratch)")
    if config["merge"] and not config["lora"]:
        raise UserError("--merge folds a LoRA adapter into its base: it goes with --lora (full fine-tuning already writes a plain ckpt.pt)")
    result_file = out_dir / ("adapter.pt" if config["lora"] else "ckpt.pt")
    if result_file.exists() and not (config["overwrite"] or config["resume"]):
        raise UserError(f"{out_dir} already holds a fine-tuned model ({result_file.name}): "
                        "pass --overwrite to replace it, or choose another --out_dir")
    config["data"] = config["data"] or str(WORLD / "sft.jsonl")
    config["eval"] = config["eval"] or (str(WORLD / "eval_heldout.jsonl") if config["data"] == str(WORLD / "sft.jsonl") else "")
    for path in [config["base"], *config["data"].split(","), config["eval"]]:
        if path and Path(path).resolve().parent == out_dir.resolve() and Path(path).name in RUN_FILES:
            raise UserError(f"{path} is an input of this run and would be written over by it: choose another --out_dir")
    if config["learning_rate"] == "auto":
        config["learning_rate"] = 2e-3 if config["lora"] or scratch else 2e-4  # chosen on the validation sets: docs/notebook.md
    if config["max_iters"] == "auto":
        config["max_iters"] = AUTO_STEPS["scratch" if scratch else "pretrained"]
    if config["replay"] == "auto":
        share = 0 if scratch else AUTO_REPLAY["lora" if config["lora"] else "full"]  # of the batch: the same loss share at any size
        config["replay"] = max(1, int(share * config["batch_size"] + 0.5)) if share else 0  # half up: 1.5 -> 2, 2.5 -> 3
    if config["min_lr"] == "auto":
        config["min_lr"] = config["learning_rate"] / 10
    return config, checkpoint, out_dir


def frozen_weights(model: GPT, config: dict) -> list[torch.nn.Parameter]:
    """The token tables --freeze_tables and the blocks --freeze_blocks keep as pretrained (full
    fine-tuning from pretrained weights only; config may be a saved run's, older than the options)."""
    config = {**BEFORE_OPTIONS, **config}
    if config["lora"] or config["init_from"] == "scratch":
        return []
    tables = {"none": [], "input": [model.transformer.wte], "output": [model.lm_head],
              "both": [model.transformer.wte, model.lm_head]}[config["freeze_tables"]]
    tables += list(model.transformer.h[:config["freeze_blocks"]])
    return list({id(p): p for table in tables for p in table.parameters()}.values())  # a tied table once


def prepare_model(config: dict, base: dict):
    """The model fine-tuning starts from: the base's weights (or random ones of its shape), with
    a LoRA adapter on top if asked. -> (model, tokenizer, what its checkpoints add, what they keep)"""
    model, tokenizer = load_model(base, dropout=config["dropout"])
    torch.manual_seed(config["seed"])  # the scratch model's weights (experiment.py redraws them), LoRA's A, dropout
    if config["init_from"] == "scratch":  # the same shape and vocabulary, none of the knowledge
        model = GPT(model.config)
    extra = {"vocab": base["vocab"], "model_config": base["model_config"], "kind": "lora" if config["lora"] else "sft",
             "base_path": str(config["base"]), "config": config}
    weights_to_save = None  # the whole model
    for p in frozen_weights(model, config):  # what pretraining put in these tables stays as it is
        p.requires_grad_(False)
    if config["lora"]:
        targets = [t.strip() for t in config["lora_targets"].split(",") if t.strip()]
        add_lora(model, targets, config["lora_rank"], config["lora_alpha"], config["lora_dropout"])
        extra.update(lora_config={"rank": config["lora_rank"], "alpha": config["lora_alpha"], "targets": targets},
                     base_fingerprint=weights_fingerprint(base["model"]))
        weights_to_save = partial(lora_state_dict, model)  # the adapter only
    return model.to(config["device"]), tokenizer, extra, weights_to_save


def replay_text(base: dict, base_path: str):
    """The token array the base was pretrained on (its dataset's train.bin), for --replay.
    -> (tokens, "") or (None, what is wrong)"""
    from data.prepare import read_tokens
    if not base.get("dataset"):
        return None, f"{base_path} does not say what text it was pretrained on (it is not a pretrain.py checkpoint)"
    folder = Path(base["dataset"])
    try:
        vocab = json.loads((folder / "meta.json").read_text())["vocab"]
        tokens = read_tokens(folder / "train.bin")
    except (OSError, ValueError, KeyError, TypeError):
        return None, f"the text {base_path} was pretrained on, {folder}, is not there or cannot be read"
    if vocab != base["vocab"]:
        return None, f"{folder} was prepared again with another vocabulary since {base_path} was pretrained on it"
    if len(tokens) <= base["model_config"]["block_size"] + 1:
        return None, f"{folder} holds too little text for windows of the base's context"
    return tokens, ""


def save_and_evaluate(model, tokenizer, config: dict, extra: dict, out_dir: Path) -> Path:
    """After training: the adapter (and merged.pt) or the checkpoint, then exact match on the
    questions of --eval, every reply in out_dir/eval.jsonl. -> the fine-tuned model's file"""
    if config["lora"]:
        result_file = out_dir / "adapter.pt"
        save_checkpoint({"lora": lora_state_dict(model), **{k: extra[k] for k in ("lora_config", "base_fingerprint",
                                                                                   "base_path", "vocab")}}, result_file)
        print(f"adapter: {result_file} ({result_file.stat().st_size / 1024:.0f} KiB), for the base {config['base']}")
        if config["merge"]:
            save_checkpoint(merged_checkpoint(model, tokenizer), out_dir / "merged.pt")
            print(f"merged checkpoint: {out_dir / 'merged.pt'}")
    else:
        result_file = out_dir / "ckpt.pt"
        print(f"checkpoint: {result_file}")
    if config["eval"]:
        model.eval()
        report = exact_match(model, tokenizer, read_questions(config["eval"]))
        kinds = ", ".join(f"{k} {acc:.0%} of {n}" for k, (acc, n) in report["by_kind"].items())
        print(f"held-out exact match: {report['accuracy']:.1%} of {report['count']} questions ({kinds})")
        with open(out_dir / "eval.jsonl", "w", encoding="utf-8") as f:
            f.writelines(json.dumps(r, ensure_ascii=False) + "\n" for r in report["results"])
        print(f"every question, answer and reply: {out_dir / 'eval.jsonl'}")
    return result_file


def main() -> None:
    config, _, typed = parse_args(OPTIONS, "python finetune.py [--lora] [--data=FILE.jsonl] [--key=value ...]", __doc__)
    replay_asked = "replay" in typed and config["replay"] != "auto"  # a number typed: no text is an error, not a line
    config, checkpoint, out_dir = settle_options(config, typed)
    rank, world, config["device"] = init_distributed(choose_device(config["device"]))
    say = print if rank == 0 else (lambda *args, **kwargs: None)  # one voice when several processes run
    config["dtype"] = choose_dtype(config["dtype"], config["device"])
    set_threads(config["threads"])
    if config["data"] == str(WORLD / "sft.jsonl"):
        from data.world.prepare import make_default_world_if_needed
        make_default_world_if_needed(WORLD, config["resume"])
    if config["eval"]:
        read_questions(config["eval"])  # a bad question file is said before training, not after
    base = load_checkpoint(config["base"], option="--base")
    replay = None
    if config["replay"]:
        replay, problem = replay_text(base, config["base"])
        if problem and (replay_asked or config["resume"]):
            raise UserError(f"replay: {problem} (" + ("put it back, or resume with --replay=0)" if config["resume"]
                                                        else "leave out --replay, or --replay=0)"))
        if problem:
            say(f"fine-tuning without replay: {problem}")
            config["replay"] = 0  # what the checkpoints record, for --resume
    if config["freeze_blocks"] > base["model_config"]["n_layer"]:
        raise UserError(f"--freeze_blocks={config['freeze_blocks']}: {config['base']} has {base['model_config']['n_layer']} "
                        "blocks; keep fewer than that as pretrained")
    writable_folder(out_dir)  # made after the refusals that need only the options and the base: those leave no folder
    model, tokenizer, extra, weights_to_save = prepare_model(config, base)
    if checkpoint is not None and checkpoint.get("base_fingerprint") != extra.get("base_fingerprint"):
        raise UserError(f"{config['base']} has other weights than the base this LoRA run began on (it was replaced since): "
                        "put that base back to resume, or start again with --overwrite")
    examples = load_instructions(config["data"].split(","), tokenizer, model.config.block_size,
                                 config["skip_bad_lines"], config["train_on_prompt"])
    batches = Batches(examples, config["val_fraction"], config["batch_size"], config["seed"],
                      config["gradient_accumulation_steps"] * world, config["device"],
                      (replay, config["replay"]) if config["replay"] else None)
    optimizer = make_optimizer(model, config["learning_rate"], config["weight_decay"], config["beta2"])
    start_step = restore(model, optimizer, checkpoint) if checkpoint is not None else 0

    total, trainable = model.num_params(non_embedding=False), sum(p.numel() for p in model.parameters() if p.requires_grad)
    say(f"{len(batches.data['train']):,} training examples ({batches.train_tokens:,} tokens), "
        f"{len(batches.data['val']):,} for validation; starting from "
        f"{'random weights' if config['init_from'] == 'scratch' else config['base']}"
        + (f"; {config['replay']} rows of its pretraining text in each batch" if config["replay"] else ""))
    say(f"{'LoRA' if config['lora'] else 'full fine-tuning'}: {trainable:,} trainable of {total / 1e6:.2f}M, "
        f"{100 * trainable / total:.2f}%; {config['device']}, {config['dtype']}, {config['max_iters']} steps"
        + (f", resuming at step {start_step}" if start_step else ""))
    train(model, optimizer, batches.get, TrainSettings.of(config), out_dir, start_step, extra, weights_to_save,
          old_results=RUN_FILES)
    leave_distributed()  # the other processes end here: process 0 saves and evaluates
    result_file = save_and_evaluate(model, tokenizer, config, extra, out_dir)
    chat = f"--adapter={result_file}" if config["lora"] else f"--ckpt={result_file}"
    print(f'next: python sample.py {chat}    (or --prompt "台灣最高的山是哪座？")')


if __name__ == "__main__":
    run(main)
