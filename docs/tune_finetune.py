"""
Choose fine-tuning settings on the validation split, never on the held-out one: each setting
fine-tunes the experiment's pretrained model (seed 1337, or --seeds of them; each fine-tuning takes
its model's seed, as in the experiment) and is scored on the
world's validation questions and conversations (other people, phrasings and superlatives than the
held-out sets), and on the taught identity and refusal phrasings, alone and at a later turn of a
conversation (the fine-tuning data's own: a goal of their own; only their turns are scored), each
right after questions about validation people (where the held-out record missed one).

    python experiment.py --study=pretraining   # first: the world and the pretrained models (or a whole experiment)
    python docs/tune_finetune.py               # then: one row per setting, to the screen and out/tune/results.md
    python docs/tune_finetune.py --seeds=3 --world_args=--val_conversations=200    # mean ± spread, 200 conversations
"""
import random
import shlex
import statistics
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from cli import UserError, parse_args, run, split_args  # noqa: E402

OPTIONS = {
    "experiment": ("out/experiment", "the experiment's folder (its world and seedN/pretrain are used)"),
    "out_dir": ("out/tune", "where each setting's run and results.md go"),
    "only": ("", "setting names to run, separated by | (default: all)"),
    "seeds": (1, "the experiment's pretrained models to fine-tune each setting from: seed1337, seed1338, ...", "[1, inf)"),
    "world_args": ("", "data/world/prepare.py options for every setting, e.g. --val_conversations=200 (more validation "
                       "conversations; the rest of the world stays as it is)"),
    "finetune_args": ("", "finetune.py options added to every setting's, e.g. --threads=1"),
    "reuse": (True, "reuse finished fine-tunings in out_dir of the same options and inputs (false: run them again)"),
}
UNTIL_DEC_3 = ["--sft_conversations=0.3333333333333333", "--behaviour_repeats=8", "--harmless_repeats=12"]  # exactly 1 / 3
# name: finetune.py options, or (those, data/world/prepare.py options for other instruction data); each is added to
# today's defaults, so a row made again is not the row of its round where a default changed since (replay since round
# 57: add --finetune_args=--replay=0 to remake an earlier row)
SETTINGS = {
    "full (default: 600 steps, 2e-4)": [],
    "LoRA (default: 600 steps, 2e-3, r16)": ["--lora"],  # r8 until round 49
    "full, the data and 300 steps until 2026-12-03": (["--max_iters=300"], UNTIL_DEC_3),
    "LoRA, the data and 300 steps until 2026-12-03": (["--lora", "--max_iters=300"], UNTIL_DEC_3),
    "full, the defaults until round 66": (["--max_iters=525"], ["--more_superlatives=30", "--more_identity=false"]),
    "LoRA, the defaults until round 66": (["--lora", "--max_iters=525"], ["--more_superlatives=30", "--more_identity=false"]),
    "full 600 steps": ["--max_iters=600"],  # round 61: as many passes over 15% more examples (80 more superlatives)
    "LoRA 600 steps": ["--lora", "--max_iters=600"],
    "full 600 steps, behaviours 18 times": (["--max_iters=600"], ["--behaviour_repeats=18"]),  # round 62
    "LoRA 600 steps, behaviours 18 times": (["--lora", "--max_iters=600"], ["--behaviour_repeats=18"]),
    "full 600 steps, behaviours 24 times": (["--max_iters=600"], ["--behaviour_repeats=24"]),
    "LoRA 600 steps, behaviours 24 times": (["--lora", "--max_iters=600"], ["--behaviour_repeats=24"]),
    "full 600 steps, more identity phrasings": (["--max_iters=600"], ["--more_identity"]),  # round 63; the defaults since 66
    "LoRA 600 steps, more identity phrasings": (["--lora", "--max_iters=600"], ["--more_identity"]),
    "full 800 steps": ["--max_iters=800"],
    "LoRA 800 steps": ["--lora", "--max_iters=800"],
    "full, fewer similar turns (0.1)": ([], ["--similar_turns=0.1"]),  # round 68: more turns that change the question
    "LoRA, fewer similar turns (0.1)": (["--lora"], ["--similar_turns=0.1"]),
    "full, restated names": ([], ["--restate_names"]),  # round 70: a reply about a person says the name first (default since 72)
    "LoRA, restated names": (["--lora"], ["--restate_names"]),
    "full, restated names, 390 strangers": ([], ["--restate_names", "--strangers=240", "--near_strangers=150"]),  # round 71
    "LoRA, restated names, 390 strangers": (["--lora"], ["--restate_names", "--strangers=240", "--near_strangers=150"]),
    "full, 390 strangers, none near": ([], ["--strangers=390"]),  # round 74, and round 78 on round 76's world
    "LoRA, 390 strangers, none near": (["--lora"], ["--strangers=390"]),
    "full, 180 strangers": ([], ["--strangers=180"]),  # round 75: a smaller dose (the default since: the default's data)
    "LoRA, 180 strangers": (["--lora"], ["--strangers=180"]),
    "full, behaviours after people": ([], ["--behaviours_after_people=2"]),  # round 76: What is your name? after a person (the default since)
    "LoRA, behaviours after people": (["--lora"], ["--behaviours_after_people=2"]),
    "full, 180 unknown names asked": ([], ["--unknown_asked=180"]),  # round 77: what pretraining says of them, asked
    "LoRA, 180 unknown names asked": (["--lora"], ["--unknown_asked=180"]),
    "full, 600 strangers": ([], ["--strangers=600"]),  # round 79: a larger dose on round 76's world
    "LoRA, 600 strangers": (["--lora"], ["--strangers=600"]),
    "full, fewer unknown turns (0.1)": ([], ["--conversation_unknown=0.1"]),  # round 69: less "I don't know" among facts
    "LoRA, fewer unknown turns (0.1)": (["--lora"], ["--conversation_unknown=0.1"]),
    "full 1e-4 (the default until 2026-11-29)": ["--learning_rate=1e-4"],
    "full 3e-4": ["--learning_rate=3e-4"],  # round 55: the other side of round 45
    "full 4e-4": ["--learning_rate=4e-4"],
    "full, token tables frozen": ["--freeze_tables=both"],  # round 46: the blocks alone learn
    "full, token embedding frozen": ["--freeze_tables=input"],  # round 47
    "full, output layer frozen": ["--freeze_tables=output"],  # the default since round 49
    "full, output layer trained (the default until 2026-12-05)": ["--freeze_tables=none"],
    "full, first block frozen": ["--freeze_blocks=1"],  # round 54: the blocks nearest the tokens kept as pretrained
    "full, first two blocks frozen": ["--freeze_blocks=2"],
    "full, replay 4 rows": ["--replay=4"],  # round 57: the base's pretraining text beside the replies
    "full, replay 8 rows": ["--replay=8"],
    "LoRA, replay 8 rows": ["--lora", "--replay=8"],  # (4 rows for full, 8 for LoRA: the default since round 57)
    "LoRA, replay 12 rows": ["--lora", "--replay=12"],  # round 58
    "LoRA, replay 16 rows": ["--lora", "--replay=16"],
    "full, no replay (the default until round 57)": ["--replay=0"],
    "LoRA, no replay (the default until round 57)": ["--lora", "--replay=0"],
    "full, every superlative wording": ([], ["--world_wordings=20"]),
    "LoRA, every superlative wording": (["--lora"], ["--world_wordings=20"]),
    "full, behaviours 18 times": ([], ["--behaviour_repeats=18"]),  # round 50: each identity, refusal, outside request
    "LoRA, behaviours 18 times": (["--lora"], ["--behaviour_repeats=18"]),
    "full, answerer phrasings": ([], ["--answerer_phrasings"]),  # round 51: identity asked without "you"
    "LoRA, answerer phrasings": (["--lora"], ["--answerer_phrasings"]),  # (both the default since round 53)
    "full, no answerer phrasings (the default until round 53)": ([], ["--answerer_phrasings=false"]),
    "LoRA, no answerer phrasings (the default until round 53)": (["--lora"], ["--answerer_phrasings=false"]),
    "full, answerer and preference phrasings": ([], ["--answerer_phrasings", "--preference_phrasings"]),  # round 52
    "LoRA, answerer and preference phrasings": (["--lora"], ["--answerer_phrasings", "--preference_phrasings"]),
    "full, 240 strangers": ([], ["--strangers=240"]),
    "LoRA, 240 strangers": (["--lora"], ["--strangers=240"]),
    "full, behaviours 3 times as often in conversations": ([], ["--conversation_behaviours=3"]),
    "LoRA, behaviours 3 times as often in conversations": (["--lora"], ["--conversation_behaviours=3"]),
    "full, paired look-alikes": ([], ["--paired_lookalikes"]),
    "LoRA, paired look-alikes": (["--lora"], ["--paired_lookalikes"]),
    "full, 150 near strangers": ([], ["--near_strangers=150"]),
    "LoRA, 150 near strangers": (["--lora"], ["--near_strangers=150"]),
    "full, more phrasings": ([], ["--more_phrasings", "--harmless_repeats=10"]),  # round 32: each look-alike 10 times
    "LoRA, more phrasings": (["--lora"], ["--more_phrasings", "--harmless_repeats=10"]),
    "full, more phrasings, look-alikes 18 times": ([], ["--more_phrasings", "--harmless_repeats=18"]),  # 18 as by default
    "LoRA, more phrasings, look-alikes 18 times": (["--lora"], ["--more_phrasings", "--harmless_repeats=18"]),
    "full, more phrasings, look-alikes 18 times, 30 more superlatives": (  # the pretraining text too: its own models
        [], ["--more_phrasings", "--harmless_repeats=18", "--more_superlatives=30"]),
    "LoRA, more phrasings, look-alikes 18 times, 30 more superlatives": (
        ["--lora"], ["--more_phrasings", "--harmless_repeats=18", "--more_superlatives=30"]),
    "full, paired look-alikes 9 times each": ([], ["--paired_lookalikes", "--harmless_repeats=9"]),  # as many look-alike examples
    "LoRA, paired look-alikes 9 times each": (["--lora"], ["--paired_lookalikes", "--harmless_repeats=9"]),
    "LoRA r8 (the default until 2026-12-05)": ["--lora", "--lora_rank=8", "--lora_alpha=16"],
    "LoRA r16": ["--lora", "--lora_rank=16", "--lora_alpha=32"],  # alpha / r stays 2: only the capacity grows
    "LoRA r32": ["--lora", "--lora_rank=32", "--lora_alpha=64"],
}
MEASURES = ["taught", "taught_in_conversation", "conversation_first", "conversation_later", "identity", "refusal",
            "harmless_not_refused", "world", "unknown", "facts"]


def taught_among_validation_people(world: Path) -> list[list[dict]]:
    """Each taught identity and refusal phrasing in a conversation after questions about validation
    people (the world's construction of the held-out set's, on validation: no held-out turn)."""
    from data.world.prepare import read_jsonl, taught_conversations
    taught = [q for q in read_jsonl(world / "eval_train.jsonl") if q["kind"] in ("identity", "refusal")]
    val = read_jsonl(world / "eval_val.jsonl")
    people = [q for q in val if q["kind"] == "person"] or [q for q in val if q["kind"] == "world"]  # a tiny world: none
    return taught_conversations(random.Random("taught among validation people"), taught, people)


def main() -> None:
    config, _, _ = parse_args(OPTIONS, "python docs/tune_finetune.py", __doc__)
    from checkpoint import load_checkpoint, load_model
    from experiment import REUSE_FILE, behaviour, read_jsonl, run_or_reuse, share, taught_in_conversation
    from evaluate import exact_match, score
    from lora import load_adapted_model
    from data.world.prepare import OPTIONS as WORLD_OPTIONS, prepare_world

    experiment, common = Path(config["experiment"]), split_args(config["world_args"], "--world_args")
    extra = split_args(config["finetune_args"], "--finetune_args")
    bases = {seed: experiment / f"seed{seed}" / "pretrain" / "ckpt.pt" for seed in range(1337, 1337 + config["seeds"])}
    for base in bases.values():  # every pretrained model there before the first fine-tuning
        if not base.exists():
            raise UserError(f"{base.parent} has no pretrained model: run python experiment.py --seeds={config['seeds']} "
                            "first (or give fewer --seeds)")
    unknown = [n for n in config["only"].split("|") if n and n not in SETTINGS]
    if unknown:
        raise UserError(f"--only: no setting named {unknown[0]!r}; the settings are: {' | '.join(SETTINGS)}")
    names = [n for n in SETTINGS if not config["only"] or n in config["only"].split("|")]
    lines = ["| setting | " + " | ".join(MEASURES) + " | mean |", "|" + " --- |" * (len(MEASURES) + 2)]
    by_kind: list[str] = []
    for name in names:
        out = Path(config["out_dir"]) / name.replace(" ", "_").replace("(", "").replace(")", "").replace(",", "")
        finetune_args, world_args = SETTINGS[name] if isinstance(SETTINGS[name], tuple) else (SETTINGS[name], [])
        world = experiment / "world"
        if common or world_args:  # the same world (pretraining text, held-out sets), other instruction or validation data
            world_config, _, _ = parse_args(WORLD_OPTIONS, "", "", argv=[*common, *world_args])
            prepare_world(world_config, out / "world")
            if (out / "world" / "train.bin").read_bytes() != (world / "train.bin").read_bytes():
                raise UserError(f"{name}: {shlex.join([*common, *world_args])} changes the pretraining text, which the "
                                f"experiment's pretrained models were not trained on: leave such options to experiment.py")
            world = out / "world"
        taught = [q for q in read_jsonl(world / "eval_train.jsonl") if q["kind"] in ("identity", "refusal")]
        among_people = taught_among_validation_people(world)
        measured: dict[str, list] = {}  # measure -> (share, set size) per seed
        for seed, base in bases.items():
            run_dir = out / f"seed{seed}"
            args = [f"--base={base}", f"--data={world / 'sft.jsonl'}", f"--eval={world / 'eval_val.jsonl'}",
                    f"--out_dir={run_dir}", f"--seed={seed}", *finetune_args, *extra]  # the experiment's fine-tuning of seed
            run_or_reuse(f"{name}, seed {seed}", "finetune.py", args, run_dir,
                         [world / "sft.jsonl", world / "eval_val.jsonl", base.parent / REUSE_FILE], config["reuse"])
            if "--lora" in finetune_args:
                model, tokenizer, _ = load_adapted_model(run_dir / "adapter.pt", base)
            else:
                model, tokenizer = load_model(load_checkpoint(run_dir / "ckpt.pt"))
            rows = read_jsonl(run_dir / "eval.jsonl")
            one = behaviour(model, tokenizer, world, "val", score(rows, [r["reply"] for r in rows])["results"])
            one["taught"] = (exact_match(model, tokenizer, taught)["accuracy"], len(taught))  # taught phrasings, alone
            in_conversation = taught_in_conversation(model, tokenizer, among_people)
            one["taught_in_conversation"] = (share(in_conversation), len(in_conversation))
            for m, value in one.items():
                measured.setdefault(m, []).append(value)
        cells = []
        for m in MEASURES:
            shares = [100 * s for s, _ in measured[m]]
            spread = f" ± {statistics.stdev(shares):.1f}" if len(shares) > 1 else ""  # a decimal: rules compare means
            cells.append(f"{statistics.mean(shares):.{1 if spread else 0}f}{spread}% of {measured[m][0][1]}")
        mean = statistics.mean(100 * s for m in MEASURES for s, _ in measured[m])
        lines.append(f"| {name} | " + " | ".join(cells) + f" | {mean:.1f}% |")
        print(lines[-1], flush=True)
        kinds = [m.split()[1] for m in measured if m.startswith("first ") and measured[m][0][1]]  # by kind, turn 1 -> later
        right = {m: statistics.mean(100 * s for s, _ in measured[m]) for m in measured}
        by_kind.append(f"| {name} | " + " | ".join(f"{right[f'first {k}']:.1f}% → {right[f'later {k}']:.1f}% "
                                                   f"(alone {right[f'alone {k}']:.1f}%)" for k in kinds) + " |")
    if by_kind:
        lines += ["", "The validation conversations by kind of question, right at turn 1 → at the later turns "
                  "(in brackets, the later turns' questions asked alone):", "",
                  "| setting | " + " | ".join(kinds) + " |", "|" + " --- |" * (len(kinds) + 1), *by_kind]
    (Path(config["out_dir"]) / "results.md").write_text("\n".join(lines) + "\n")
    print("\n" + "\n".join(lines))


if __name__ == "__main__":
    run(main)
