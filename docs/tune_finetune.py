"""
Choose fine-tuning settings on the validation split, never on the held-out one: each setting
fine-tunes the experiment's pretrained model (seed 1337) and is scored on the world's validation
questions and conversations (other people, phrasings and superlatives than the held-out sets),
and on the taught identity and refusal phrasings, alone and at a later turn of a conversation
(the fine-tuning data's own: a goal of their own; only their turns are scored).

    python experiment.py                 # first: the world and the pretrained model it reuses
    python docs/tune_finetune.py         # then: one row per setting, to the screen and out/tune/results.md
"""
import shlex
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from cli import parse_args, run  # noqa: E402

OPTIONS = {
    "experiment": ("out/experiment", "the experiment's folder (its world and seed1337/pretrain are used)"),
    "out_dir": ("out/tune", "where each setting's run and results.md go"),
    "only": ("", "setting names to run, separated by | (default: all)"),
}
SETTINGS = {  # name: finetune.py options, or (those, data/world/prepare.py options for other instruction data)
    "full (default: 300 steps, 1e-4)": [],
    "LoRA (default: 300 steps, 2e-3, r8)": ["--lora"],
    "full, behaviours 8 times": ([], ["--behaviour_repeats=8"]),
    "LoRA, behaviours 8 times": (["--lora"], ["--behaviour_repeats=8"]),
    "full 600 steps": ["--max_iters=600"],
    "LoRA 600 steps": ["--lora", "--max_iters=600"],
    "full 2e-4": ["--learning_rate=2e-4"],
    "full, 3 times the conversations": ([], ["--sft_conversations=1"]),
    "LoRA, 3 times the conversations": (["--lora"], ["--sft_conversations=1"]),
    "full, 240 strangers": ([], ["--strangers=240"]),
    "LoRA, 240 strangers": (["--lora"], ["--strangers=240"]),
}
MEASURES = ["taught", "taught_in_conversation", "conversation_first", "conversation_later", "identity", "refusal",
            "harmless_not_refused", "world", "unknown", "facts"]


def main() -> None:
    config, _, _ = parse_args(OPTIONS, "python docs/tune_finetune.py", __doc__)
    from checkpoint import load_checkpoint, load_model
    from experiment import behaviour, read_jsonl, share, taught_in_conversation
    from evaluate import exact_match, score
    from lora import load_adapted_model

    world, base = Path(config["experiment"]) / "world", Path(config["experiment"]) / "seed1337" / "pretrain" / "ckpt.pt"
    from data.world.prepare import OPTIONS as WORLD_OPTIONS, prepare_world
    names = [n for n in SETTINGS if not config["only"] or n in config["only"].split("|")]
    lines = ["| setting | " + " | ".join(MEASURES) + " | mean |", "|" + " --- |" * (len(MEASURES) + 2)]
    for name in names:
        out = Path(config["out_dir"]) / name.replace(" ", "_").replace("(", "").replace(")", "").replace(",", "")
        finetune_args, world_args = SETTINGS[name] if isinstance(SETTINGS[name], tuple) else (SETTINGS[name], [])
        data = world / "sft.jsonl"
        if world_args:  # the same world (its validation sets included), other instruction data
            world_config, _, _ = parse_args(WORLD_OPTIONS, "", "", argv=world_args)
            prepare_world(world_config, out / "world")
            data = out / "world" / "sft.jsonl"
        args = [f"--base={base}", f"--data={data}", f"--eval={world / 'eval_val.jsonl'}", f"--out_dir={out}",
                "--overwrite", *finetune_args]
        print(f"\n=== {name}: python finetune.py {shlex.join(args)}", flush=True)
        subprocess.run([sys.executable, "finetune.py", *args], cwd=ROOT, check=True, stdout=subprocess.DEVNULL)
        if "--lora" in finetune_args:
            model, tokenizer, _ = load_adapted_model(out / "adapter.pt", base)
        else:
            model, tokenizer = load_model(load_checkpoint(out / "ckpt.pt"))
        rows = read_jsonl(out / "eval.jsonl")
        measured = behaviour(model, tokenizer, world, "val", score(rows, [r["reply"] for r in rows])["results"])
        taught = [q for q in read_jsonl(world / "eval_train.jsonl") if q["kind"] in ("identity", "refusal")]
        measured["taught"] = (exact_match(model, tokenizer, taught)["accuracy"], len(taught))  # taught phrasings, alone
        in_conversation = taught_in_conversation(model, tokenizer, world)
        measured["taught_in_conversation"] = (share(in_conversation), len(in_conversation))
        shares = [measured[m][0] for m in MEASURES]
        lines.append(f"| {name} | " + " | ".join(f"{100 * s:.0f}% of {measured[m][1]}" for s, m in zip(shares, MEASURES))
                     + f" | {100 * sum(shares) / len(shares):.1f}% |")
        print(lines[-1], flush=True)
    (Path(config["out_dir"]) / "results.md").write_text("\n".join(lines) + "\n")
    print("\n" + "\n".join(lines))


if __name__ == "__main__":
    run(main)
