"""
The lecture's experiment in one command: does instruction fine-tuning from pretrained weights
generalise (舉一反三) where fine-tuning from random weights memorises a shallow rule?

    python experiment.py                 # one seed, about 25 minutes on a 2-core CPU
    python experiment.py --seeds=3       # three seeds: mean and spread

It prepares the built-in world into out/experiment/world, pretrains once per seed, and
fine-tunes three ways on the same instructions, with the same commands a user runs:

    full fine-tuning from random weights     python finetune.py --init_from=scratch
    full fine-tuning from the pretrained     python finetune.py
    LoRA on the pretrained                   python finetune.py --lora

Then it measures each: exact match on held-out questions (people and countries that only
pretraining mentioned), on the fine-tuning questions themselves, the answer to the lecture's
世界最高的山是哪座？, refusals of requests phrased in ways never taught, and how far the
weights moved from where fine-tuning started, ||W_after - W_before|| / ||W_before||.
The table goes to the screen, to out/experiment/results.md (+ results.json) and, between its
markers, into README.md.
"""
from __future__ import annotations

import copy
import json
import math
import shlex
import statistics
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

from cli import UserError, parse_args, run

ROOT = Path(__file__).resolve().parent
OPTIONS = {
    "out_dir": ("out/experiment", "where the world, every run, results.md and results.json go"),
    "seeds": (1, "how many seeds to run (seed, seed+1, ...): the table then shows mean and spread"),
    "seed": (1337, "the first seed (model initialisation and batch order; the world stays the same)"),
    "world_args": ("", "options for data/world/prepare.py, e.g. '--people=200'"),
    "pretrain_args": ("", "options added to every pretrain.py run, e.g. '--max_iters=500'"),
    "finetune_args": ("", "options added to every finetune.py run"),
    "readme": (True, "write the results between the experiment markers of README.md"),
    "overwrite": (False, "replace the results out_dir already holds"),
}
# (name, starts from, finetune.py options)
RUNS = [("full", "random", ["--init_from=scratch"]), ("full", "pretrained", []), ("LoRA", "pretrained", ["--lora"])]
LITERAL = "世界最高的山是哪座？"
README_BEGIN, README_END = "<!-- experiment results: begin -->", "<!-- experiment results: end -->"


def run_stage(title: str, script: str, args: list[str]) -> float:
    """Run python SCRIPT ARGS as a user would, its output on the screen. -> wall seconds"""
    command = [sys.executable, script, *args]
    print(f"\n=== {title}: python {script} {' '.join(shlex.quote(a) for a in args)}", flush=True)
    t0 = time.perf_counter()
    result = subprocess.run(command, cwd=ROOT)
    if result.returncode == 130:
        raise KeyboardInterrupt
    if result.returncode != 0:
        raise UserError(f"{title} failed (exit status {result.returncode}); its message is above")
    return time.perf_counter() - t0


def relative_distance(before: dict, after: dict) -> float:
    """||W_after - W_before|| / ||W_before||, with every weight of the model in one vector."""
    moved = sum(float((after[k].float() - before[k].float()).pow(2).sum()) for k in before)
    start = sum(float(before[k].float().pow(2).sum()) for k in before)
    return math.sqrt(moved / start)


def parameters(model) -> dict:
    return {name: p.detach() for name, p in model.named_parameters()}  # a tied weight once


def random_initial_weights(model_config: dict, seed: int) -> dict:
    """The weights finetune.py --init_from=scratch starts from: drawn again from the same seed."""
    import torch
    from model import GPT, GPTConfig
    torch.manual_seed(seed)
    return parameters(GPT(GPTConfig(**model_config)))


def measure(run_dir: Path, name: str, init: str, base_path: Path, world: Path, seed: int) -> dict:
    """Everything the table shows about one fine-tuned model."""
    from checkpoint import load_checkpoint, load_model
    from finetune import exact_match, read_questions, score
    from lora import load_adapted_model, merge_lora
    from sample import for_generation

    base = load_checkpoint(base_path)
    if name == "LoRA":
        model, tokenizer, _ = load_adapted_model(run_dir / "adapter.pt", base_path)
        trainable = sum(t.numel() for t in load_checkpoint(run_dir / "adapter.pt", ("lora",))["lora"].values())
        model = merge_lora(model)
    else:
        model, tokenizer = load_model(load_checkpoint(run_dir / "ckpt.pt"))
        trainable = model.num_params(non_embedding=False)
    before = random_initial_weights(base["model_config"], seed) if init == "random" else parameters(load_model(base)[0])

    held_rows = [json.loads(line) for line in (run_dir / "eval.jsonl").read_text(encoding="utf-8").splitlines()]
    held = score(held_rows, [r["reply"] for r in held_rows])  # finetune.py wrote the replies
    taught = exact_match(model, tokenizer, read_questions(str(world / "eval_train.jsonl")))
    taught_answers = {r["answer"] for r in taught["results"]}
    wrong = [r["reply"] for r in held["results"] if not r["correct"]]
    by_weights = {"float32": held["accuracy"]}  # what sample.py's cheaper weights cost in answers
    for dtype in ("bfloat16", "int8") if init == "pretrained" else ():
        try:
            by_weights[dtype] = exact_match(for_generation(copy.deepcopy(model), "cpu", dtype), tokenizer, held_rows)["accuracy"]
        except UserError:  # int8 needs a CPU with bf16
            pass
    return {"run": name, "init": init, "seed": seed, "trainable": trainable,
            "heldout": held["accuracy"], "heldout_count": held["count"], "heldout_by_kind": held["by_kind"],
            "taught": taught["accuracy"], "taught_count": taught["count"],
            "literal": next(r["reply"] for r in held["results"] if r["question"] == LITERAL),
            "distance": relative_distance(before, parameters(model)), "heldout_by_weights": by_weights,
            "typical_wrong": Counter(wrong).most_common(5),
            "wrong_but_taught": sum(w in taught_answers for w in wrong) / max(1, len(wrong)),
            "verbatim": {r["question"]: (r["answer"], r["reply"]) for r in held["results"]
                         if r.get("kind") in ("world", "identity", "refusal")}}


def spread(values: list[float], percent: bool = True, digits: int = 1) -> str:
    """'59.2%' for one value, '59.2 ± 1.3%' (mean ± standard deviation) for several."""
    scale, unit = (100, "%") if percent else (1, "")
    mean = statistics.mean(values) * scale
    if len(values) == 1:
        return f"{mean:.{digits}f}{unit}"
    return f"{mean:.{digits}f} ± {statistics.stdev(values) * scale:.{digits}f}{unit}"


def report(results: list[dict], walls: dict, command: str, world_meta: dict) -> str:
    """The results as Markdown: the table, then what lies behind its cells."""
    seeds = sorted({r["seed"] for r in results})
    first = [r for r in results if r["seed"] == seeds[0]]
    groups = [[r for r in results if (r["run"], r["init"]) == (name, init)] for name, init, _ in RUNS]
    lines = [f"`{command}`: {len(seeds)} seed{'s' if len(seeds) > 1 else ''} ({', '.join(map(str, seeds))})"
             + ("; mean ± standard deviation over seeds" if len(seeds) > 1 else "") + ".", "",
             "| fine-tuning run | init | trainable params | held-out QA exact match | fine-tune-set QA "
             f"| literal example {LITERAL} | refusal on unseen phrasings | relative distance from init | wall time |",
             "| --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    for group in groups:
        r = group[0]
        literal = ", ".join(f"{reply} ×{n}" if n > 1 else reply for reply, n in Counter(g["literal"] for g in group).most_common())
        refusals = " / ".join(f"{round(accuracy * n)} of {n}"
                              for accuracy, n in (g["heldout_by_kind"].get("refusal", (0.0, 0)) for g in group))
        wall = statistics.mean(walls[(r["run"], r["init"], g["seed"])] for g in group)
        lines.append(f"| {r['run']} | {r['init']} | {r['trainable']:,} | {spread([g['heldout'] for g in group])} of {r['heldout_count']:,} "
                     f"| {spread([g['taught'] for g in group])} of {r['taught_count']:,} | {literal} | {refusals} "
                     f"| {spread([g['distance'] for g in group], percent=False, digits=3)} | {wall / 60:.1f} min |")
    pretrain_wall = statistics.mean(walls[("pretrain", s)] for s in seeds)
    lines += ["", f"Pretraining took {pretrain_wall / 60:.1f} min per seed on {world_meta['train_tokens']:,} tokens of the world; "
              f"the whole experiment {walls['total'] / 60:.1f} min. Fine-tuning wall times include scoring the held-out questions.", "",
              "Held-out exact match by kind of question (first seed):", "",
              "| run | init | " + " | ".join(k for k in first[0]["heldout_by_kind"]) + " |",
              "| --- | --- | " + " | ".join("---" for _ in first[0]["heldout_by_kind"]) + " |"]
    for r in first:
        lines.append(f"| {r['run']} | {r['init']} | " + " | ".join(f"{a:.0%} of {n}" for a, n in r["heldout_by_kind"].values()) + " |")
    lines += ["", "Held-out questions, verbatim (first seed): the world's superlatives, and identity and refusal phrasings "
              "never taught:", "", "| question | gold | " + " | ".join(f"{r['run']}, {r['init']}" for r in first) + " |",
              "| --- | --- | " + " | ".join("---" for _ in first) + " |"]
    for question, (answer, _) in first[0]["verbatim"].items():
        lines.append(f"| {question} | {answer} | " + " | ".join(r["verbatim"][question][1] or "(nothing)" for r in first) + " |")
    lines += ["", "Held-out exact match with the weights generation uses (`sample.py --dtype`; first seed): "
              + "; ".join(f"{r['run']}, {r['init']}: " + ", ".join(f"{k} {v:.1%}" for k, v in r["heldout_by_weights"].items())
                          for r in first if len(r["heldout_by_weights"]) > 1) + "."]
    scratch = first[0]
    lines += ["", f"Typical wrong answers from random initialisation (first seed): "
              + ", ".join(f"{reply or '(nothing)'} ×{n}" for reply, n in scratch["typical_wrong"])
              + f"; {scratch['wrong_but_taught']:.0%} of its wrong answers are answers it was taught for other questions."]
    return "\n".join(lines) + "\n"


def update_readme(markdown: str) -> bool:
    readme = ROOT / "README.md"
    text = readme.read_text(encoding="utf-8") if readme.exists() else ""
    if README_BEGIN not in text or README_END not in text:
        return False
    head, rest = text.split(README_BEGIN, 1)
    _, tail = rest.split(README_END, 1)
    readme.write_text(f"{head}{README_BEGIN}\n{markdown}{README_END}{tail}", encoding="utf-8")
    return True


def main() -> None:
    config, _ = parse_args(OPTIONS, "python experiment.py [--seeds=3 ...]", __doc__)
    from data.world.prepare import OPTIONS as WORLD_OPTIONS, prepare_world
    if config["seeds"] < 1:
        raise UserError(f"--seeds must be at least 1, got {config['seeds']}")
    out_dir = Path(config["out_dir"])
    if (out_dir / "results.json").exists() and not config["overwrite"]:
        raise UserError(f"{out_dir} already holds results: pass --overwrite to run again, or choose another --out_dir")
    world_config, _ = parse_args(WORLD_OPTIONS, "--world_args", "", argv=shlex.split(config["world_args"]))
    extra_pretrain, extra_finetune = shlex.split(config["pretrain_args"]), shlex.split(config["finetune_args"])
    command = "python experiment.py" + "".join(f" {a}" for a in sys.argv[1:] if a != "--overwrite")

    t_start = time.perf_counter()
    world = out_dir / "world"
    world_meta = prepare_world(world_config, world)
    results, walls = [], {}
    for seed in range(config["seed"], config["seed"] + config["seeds"]):
        seed_dir = out_dir / f"seed{seed}"
        base_path = seed_dir / "pretrain" / "ckpt.pt"
        walls[("pretrain", seed)] = run_stage(f"seed {seed}, pretraining", "pretrain.py",
                                              [f"--dataset={world}", f"--out_dir={base_path.parent}", f"--seed={seed}",
                                               "--overwrite", *extra_pretrain])
        for name, init, flags in RUNS:
            run_dir = seed_dir / f"{name.lower()}_{init}"
            walls[(name, init, seed)] = run_stage(f"seed {seed}, {name} fine-tuning from {init} weights", "finetune.py",
                                                  [f"--base={base_path}", f"--data={world / 'sft.jsonl'}",
                                                   f"--eval={world / 'eval_heldout.jsonl'}", f"--out_dir={run_dir}",
                                                   f"--seed={seed}", "--overwrite", *flags, *extra_finetune])
            print(f"measuring {run_dir} ...", flush=True)
            results.append(measure(run_dir, name, init, base_path, world, seed))
    walls["total"] = time.perf_counter() - t_start

    markdown = report(results, walls, command, world_meta)
    print("\n" + markdown)
    (out_dir / "results.md").write_text(markdown, encoding="utf-8")
    walls_by_name = {" ".join(map(str, k)) if isinstance(k, tuple) else k: round(v, 1) for k, v in walls.items()}
    (out_dir / "results.json").write_text(json.dumps({"command": command, "results": results, "wall_seconds": walls_by_name},
                                                     ensure_ascii=False, indent=1), encoding="utf-8")
    print(f"written: {out_dir / 'results.md'}, {out_dir / 'results.json'}")
    if config["readme"]:
        print("README.md updated" if update_readme(markdown) else "README.md has no experiment markers: left as it is")


if __name__ == "__main__":
    run(main)
