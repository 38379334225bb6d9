"""
Instruction fine-tuning: teach a pretrained model to answer, on USER/AI examples, with the loss
on the AI's reply (and its [END]) only. 「關鍵是用 Pre-train 的參數初始化」: it starts from the
pretrained weights, fully (every weight trains) or through LoRA (the weights stay frozen and a
small adapter learns the change).

    python finetune.py                         # full fine-tuning -> out/sft/ckpt.pt
    python finetune.py --lora                  # LoRA -> out/lora/adapter.pt (kilobytes)
    python finetune.py --init_from=scratch     # the same from random weights: the baseline
    python finetune.py --data=mine.jsonl       # your own examples

Instruction files are JSONL, one example per line (instructions.py reads them).
With the built-in world data, the run ends with exact-match accuracy on held-out questions:
questions about people and places that fine-tuning never mentions, only pretraining did.
"""
from __future__ import annotations

import json
from pathlib import Path

import torch

from checkpoint import load_checkpoint, load_model, save_checkpoint
from cli import DEVICE, UserError, parse_args, run
from evaluate import exact_match, read_questions
from instructions import collate, length_batches, load_instructions
from lora import add_lora, lora_state_dict, merged_checkpoint, weights_fingerprint
from machine import choose_device, choose_dtype, init_distributed
from model import GPT
from trainer import batch_generator, make_optimizer, restore, start_or_resume, train, writable_folder

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
    # LoRA
    "lora": (False, "train a LoRA adapter instead of every weight"),
    "lora_rank": (8, "rank r of the update B A", "[1, inf)"),
    "lora_alpha": (16.0, "the update is scaled by alpha / r", "(0, inf)"),
    "lora_dropout": (0.0, "dropout on the LoRA path's input (0: off, as in peft; it also saves time)", "[0, 1)"),
    "lora_targets": ("c_attn,c_proj,c_fc", "linear layers to adapt, by name ending (attention and MLP projections)"),
    "merge": (False, "with --lora: also write merged.pt, a plain checkpoint with the adapter folded in"),
    # optimisation
    "batch_size": (32, "examples per batch (batches are grouped by length: next to no padding)", "[1, inf)"),
    "gradient_accumulation_steps": (1, "batches per optimizer step", "[1, inf)"),
    "max_iters": ("auto", "optimizer steps (auto: 300 from pretrained weights, beyond which they overfit; 1200 from scratch)",
                  "auto or int [1, inf)"),
    "learning_rate": ("auto", "peak learning rate (auto: 3e-4 for full fine-tuning, 2e-3 for LoRA and from scratch)",
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
    "threads": (0, "CPU threads for torch (0: one per core)", "[0, inf)"),
}
WORLD = Path(__file__).resolve().parent / "data" / "world"
FIXED_ON_RESUME = ("base", "init_from", "lora", "lora_rank", "lora_alpha", "lora_targets")
RUN_FILES = ("ckpt.pt", "log.jsonl", "eval.jsonl", "adapter.pt", "merged.pt")  # what a run writes in its out_dir


# ----------------------------------------------------------------------------- the run
def main() -> None:
    config, _, typed = parse_args(OPTIONS, "python finetune.py [--lora] [--data=FILE.jsonl] [--key=value ...]", __doc__)
    default_dir = "out/lora" if config["lora"] else "out/sft_scratch" if config["init_from"] == "scratch" else "out/sft"
    out_dir = Path(config["out_dir"] or default_dir)
    config, checkpoint = start_or_resume(config, typed, out_dir, FIXED_ON_RESUME, kinds=("sft", "lora"))
    scratch, use_lora = config["init_from"] == "scratch", config["lora"]  # a resumed run's, as saved
    result_file = out_dir / ("adapter.pt" if use_lora else "ckpt.pt")
    if result_file.exists() and not (config["overwrite"] or config["resume"]):
        raise UserError(f"{out_dir} already holds a fine-tuned model ({result_file.name}): "
                        "pass --overwrite to replace it, or choose another --out_dir")
    data_files = config["data"].split(",") if config["data"] else [str(WORLD / "sft.jsonl")]
    eval_file = config["eval"] or ("" if config["data"] else str(WORLD / "eval_heldout.jsonl"))
    for path in [config["base"], *data_files, eval_file]:
        if path and Path(path).resolve().parent == out_dir.resolve() and Path(path).name in RUN_FILES:
            raise UserError(f"{path} is an input of this run and would be written over by it: "
                            "choose another --out_dir")
    writable_folder(out_dir)
    if config["learning_rate"] == "auto":
        config["learning_rate"] = 2e-3 if use_lora or scratch else 3e-4  # chosen on the validation sets: docs/notebook.md
    if config["max_iters"] == "auto":
        config["max_iters"] = 1200 if scratch else 300
    if config["min_lr"] == "auto":
        config["min_lr"] = config["learning_rate"] / 10
    rank, world, config["device"] = init_distributed(choose_device(config["device"]))
    config["dtype"] = choose_dtype(config["dtype"], config["device"])
    if config["threads"] > 0:
        torch.set_num_threads(config["threads"])
    base = load_checkpoint(config["base"], option="--base")
    model, tokenizer = load_model(base, dropout=config["dropout"])
    torch.manual_seed(config["seed"])  # the scratch model's weights (experiment.py redraws them), LoRA's A, dropout
    if scratch:  # the same shape and vocabulary, none of the knowledge
        model = GPT(model.config)
    block_size = model.config.block_size

    if not config["data"] and not (WORLD / "sft.jsonl").exists():
        from data.world.prepare import prepare_world
        prepare_world()
    questions = read_questions(eval_file) if eval_file else []
    examples = load_instructions(data_files, tokenizer, block_size, config["skip_bad_lines"], config["train_on_prompt"])
    permutation = torch.randperm(len(examples), generator=torch.Generator().manual_seed(config["seed"])).tolist()
    n_val = int(len(examples) * config["val_fraction"]) if len(examples) >= 20 else 0
    val_examples = [examples[i] for i in permutation[:n_val]] or examples  # too few to split: validate on all
    train_examples = [examples[i] for i in permutation[n_val:]]
    data = {"train": train_examples, "val": val_examples}
    lengths = {split: [len(ids) for ids, _ in split_examples] for split, split_examples in data.items()}
    fixed_batches = {split: length_batches(lengths[split], config["batch_size"], batch_generator(config["seed"], split, -1))
                     for split in data}  # for evaluation: the same batches every time
    epoch_batches: dict[int, list] = {}

    def get_batch(split: str, step: int, micro_step: int):
        """A new random set of batches each epoch, a function of the epoch alone (resumable)."""
        if step < 0:
            batches = fixed_batches[split]
            return collate(data[split], batches[micro_step % len(batches)], config["device"])
        index = step * config["gradient_accumulation_steps"] * world + micro_step  # micro_step counts every process's
        epoch = index // len(fixed_batches["train"])
        if epoch not in epoch_batches:
            epoch_batches.clear()
            epoch_batches[epoch] = length_batches(lengths["train"], config["batch_size"],
                                                  batch_generator(config["seed"], "epoch", epoch))
        batches = epoch_batches[epoch]
        return collate(data["train"], batches[index % len(batches)], config["device"])

    total = model.num_params(non_embedding=False)
    extra = {"vocab": base["vocab"], "model_config": base["model_config"], "kind": "lora" if use_lora else "sft",
             "base_path": str(config["base"])}
    weights_to_save = None
    if use_lora:
        targets = [t.strip() for t in config["lora_targets"].split(",") if t.strip()]
        add_lora(model, targets, config["lora_rank"], config["lora_alpha"], config["lora_dropout"])
        extra.update(lora_config={"rank": config["lora_rank"], "alpha": config["lora_alpha"], "targets": targets},
                     base_fingerprint=weights_fingerprint(base["model"]))
        weights_to_save = lambda: lora_state_dict(model)  # noqa: E731
    model.to(config["device"])
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    optimizer = make_optimizer(model, config["learning_rate"], config["weight_decay"], config["beta2"])
    start_step = restore(model, optimizer, checkpoint) if checkpoint is not None else 0

    n_tokens = sum(len(ids) - 1 for ids, _ in train_examples)
    say = print if rank == 0 else (lambda *args, **kwargs: None)  # one voice when several processes run
    say(f"{len(train_examples):,} training examples ({n_tokens:,} tokens), {len(val_examples):,} for validation; "
        f"starting from {'random weights' if scratch else config['base']}")
    say(f"{'LoRA' if use_lora else 'full fine-tuning'}: {trainable:,} trainable of {total / 1e6:.2f}M, "
        f"{100 * trainable / total:.2f}%; {config['device']}, {config['dtype']}, {config['max_iters']} steps"
          + (f", resuming at step {start_step}" if start_step else ""))
    train(model, optimizer, get_batch, config, out_dir, start_step, extra, weights_to_save,
          old_results=RUN_FILES)
    if world > 1:
        torch.distributed.destroy_process_group()
        if rank > 0:
            return  # process 0 saves and evaluates

    if use_lora:
        adapter = {"lora": lora_state_dict(model), **{k: extra[k] for k in ("lora_config", "base_fingerprint", "base_path", "vocab")}}
        save_checkpoint(adapter, result_file)
        print(f"adapter: {result_file} ({result_file.stat().st_size / 1024:.0f} KiB), for the base {config['base']}")
        if config["merge"]:
            save_checkpoint(merged_checkpoint(model, tokenizer), out_dir / "merged.pt")
            print(f"merged checkpoint: {out_dir / 'merged.pt'}")
    else:
        print(f"checkpoint: {result_file}")
    if questions:
        model.eval()
        report = exact_match(model, tokenizer, questions)
        kinds = ", ".join(f"{k} {acc:.0%} of {n}" for k, (acc, n) in report["by_kind"].items())
        print(f"held-out exact match: {report['accuracy']:.1%} of {report['count']} questions ({kinds})")
        with open(out_dir / "eval.jsonl", "w", encoding="utf-8") as f:
            f.writelines(json.dumps(r, ensure_ascii=False) + "\n" for r in report["results"])
        print(f"every question, answer and reply: {out_dir / 'eval.jsonl'}")
    chat = f"--adapter={result_file}" if use_lora else f"--ckpt={result_file}"
    print(f'next: python sample.py {chat}    (or --prompt "台灣最高的山是哪座？")')


if __name__ == "__main__":
    run(main)
