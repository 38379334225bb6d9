"""
Which pretraining gives the best model per minute of this machine? Each variant of the model and
its optimizer is pretrained for the same time on each corpus, then scored on held-out text it
never saw, in bits per byte: the loss summed over the test tokens, over the bytes they stand for
(comparable across tokenizers and corpora; lower is better).

The time is the machine's, not the run's: each variant's step is first timed alone, with every
core (PROBE_STEPS steps), right after the corpus's first variant is timed again (the host's speed
drifts: the two set the ratio; --probe_rounds such pairs, the median ratio kept), and a budget of
M minutes buys it M * 60 / that many steps. The scores then do not depend on what else the
machine did while the runs went, and --jobs can run several at once. --minutes=0 runs each
variant for its own step count instead (pretrain.py's, or its --max_iters): the speedrun recipe
against GPT-2's, each at its full length. --half_time gives each variant half of GPT-2's recipe's
time instead: both timed now, one after the other, so that the step-time ratio is of one moment
(a probe an hour earlier may find the machine faster or slower).

    python quality.py                                     # GPT-2's recipe, each change alone on it, all, nanoGPT's
    python quality.py --minutes=10 --variants=default,all --corpora=fortunes
    python quality.py --variants=without                  # the speedrun recipe with each change removed (speedrun-rope, ...)
    python quality.py --variants="default,wide=--n_embd=384 --n_head=6"    # your own variant
    python quality.py --minutes=0 --variants=gpt2,speedrun  # GPT-2's recipe and today's, each at its own length
    python quality.py --half_time --variants=speedrun --seeds=3   # then today's in half of GPT-2's time
    python quality.py --minutes=0 --variants=gpt2,speedrun --retime   # their recorded runs' minutes on one clock
    python quality.py --jobs=2                            # two runs at once, a core each (timed alone first)
    python quality.py --readme                            # also write the tables into README.md and docs/quality.md

Corpora: real text that no one here wrote, from Debian's packages, and the built-in world:
    fortunes     English: the fortune-cookie files of Debian's `fortunes` (quotations, jokes, verse)
    fortunes-zh  mostly Chinese: Debian's `fortunes-zh` (Tang and Song poetry, Debian's documents in Chinese)
    world        the built-in world's pretraining text
(`apt-get install fortunes fortunes-zh` puts them in /usr/share/games/fortunes.) The documents of
a corpus are shuffled with a fixed seed; 5% are held out as the test set before anything is run,
and pretrain.py's validation split is 5% of the rest: settings are chosen on validation, never on
test. Every result is kept in out/quality/results.json, keyed by corpus, variant, minutes (or
half of gpt2's time), seed and the options the variant ran with (pretrain.py's defaults filled in), so that runs of a few
variants at a time add up to one table; what it holds from a machine training in the same
precision (bf16 or fp32) is not run again (unless --rerun). A table continued on the same CPU
keeps its clock: the new runs are timed against a variant of the runs it keeps, at the seconds a
step recorded for them, so that they get the steps the recorded runs' moment gave. Results on a corpus whose text has
changed since (the world's, after its options changed) are set aside: kept, not reused or shown,
until the text is again the one they measured; so are those of a built-in variant whose recipe has
moved (pretrain.py's defaults, CHANGES), each result filed under the built-in that runs its options.
"""
from __future__ import annotations

import hashlib
import json
import math
import os
import random
import re
import shlex
import statistics
import subprocess
import sys
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor, as_completed
from pathlib import Path

from cli import UserError, atomic_write, parse_args, run, split_args, update_docs

OPTIONS = {
    "corpora": ("fortunes,fortunes-zh,world", "which corpora (see above)"),
    "variants": ("alone,all,speedrun,nanogpt",
                 "variants or groups: alone (gpt2, and each change alone on it), without (the speedrun recipe, and "
                 "it with each of its changes removed or another added), gpt2 (GPT-2's recipe, pretrain.py's "
                 "default until 2026-11), default (pretrain.py as it is), all, speedrun (pretrain.py's default "
                 "written out, at 1,200 steps), nanogpt, a "
                 "change's name, or your own as NAME=OPTIONS (pretrain.py's defaults and these: "
                 "\"fast=--muon --learning_rate=3e-3\")"),
    "minutes": (2.0, "this machine's time for each pretraining run (0: each variant's own step count; not with "
                "--half_time)", "[0, inf)"),
    "half_time": (False, "give each variant half the time of gpt2's full-length (--minutes=0) runs in the record with "
                  "the same --pretrain_args: gpt2 and the variant timed now, one after the other, the variant's steps "
                  "half of gpt2's steps times gpt2's seconds a step over its own; filed at half of gpt2's recorded minutes"),
    "seeds": (1, "runs per variant and corpus, seeds 1337, 1338, ...", "[1, inf)"),
    "out_dir": ("out/quality", "corpora, runs and results.json go here"),
    "pretrain_args": ("", "more pretrain.py options for every run, e.g. \"--n_layer=2 --eval_interval=50\""),
    "fortunes_dir": ("/usr/share/games/fortunes", "where Debian's fortunes and fortunes-zh put their files"),
    "probe_rounds": (3, "pairs of timings for each variant after a corpus's first: that first one again, then the "
                     "variant; the median of the pairs' ratios kept (fewer: sooner, on a machine whose speed holds "
                     "still)", "[1, inf)"),
    "jobs": (1, "pretraining runs at once, the cores shared among them (each variant is timed alone first)", "[1, inf)"),
    "rerun": (False, "run again what results.json already holds (by default its result is kept)"),
    "retime": (False, "with --minutes=0: train nothing (--seeds, --jobs, --rerun unused); time the variants now and give "
               "the recorded full-length runs of all but the first the seconds a step that the first's recorded runs' "
               "clock gives them: one clock for a table whose runs came from several hosts (give gpt2 first)"),
    "readme": (False, "write the tables into README.md and docs/quality.md, with the record docs/quality_results.json"),
}
# The changes since GPT-2 that the NanoGPT speedrun made, and a smaller batch: pretrain.py's
# option that turns each on, and the one that turns it off
CHANGES = {"rope": ("--rope", "--rope=false"), "qk_norm": ("--qk_norm", "--qk_norm=false"),
           "relu2": ("--relu2", "--relu2=false"), "zero_init": ("--zero_init", "--zero_init=false"),
           "untied": ("--untied", "--untied=false"), "logit_cap": ("--logit_cap=30", "--logit_cap=0"),
           "muon": ("--muon", "--muon=false"), "batch8": ("--batch_size=8", "--batch_size=16")}
KEPT = ("rope", "qk_norm", "relu2", "zero_init", "muon", "batch8")  # the speedrun recipe's (not the cap, step 29; not untied, step 31)
# pretrain.py before these changes (GPT-2's model, AdamW, 2,000 steps of 16), written out so that
# it stays what it is when pretrain.py's defaults move: the variants below start from it
GPT2 = ["--n_layer=4", "--n_head=4", "--n_embd=256", "--block_size=256", "--max_iters=2000", "--learning_rate=2e-3",
        "--min_lr=2e-4", "--warmup_iters=50", *(off for _, off in CHANGES.values())]
# pretrain.py's default: GPT-2's recipe with the changes KEPT; 1,200 steps, half GPT-2's time, already end below it
# (pretrain.py takes 2,400 for the experiment's behaviours: docs/notebook.md, the fourteenth round)
SPEEDRUN = [*GPT2, *(CHANGES[c][0] for c in KEPT), "--max_iters=1200"]
# nanoGPT's README, "I only have a macbook": config/train_shakespeare_char.py with its CPU overrides
NANOGPT = [*GPT2, "--block_size=64", "--batch_size=12", "--n_layer=4", "--n_head=4", "--n_embd=128", "--dropout=0.0",
           "--learning_rate=1e-3", "--min_lr=1e-4", "--warmup_iters=100", "--beta2=0.99"]
BUILT_IN = ["gpt2", "default", *CHANGES, "all", "speedrun", *(f"speedrun{'-' if c in KEPT else '+'}{c}" for c in CHANGES),
            "nanogpt"]
CHINESE_FORTUNES = ("chinese", "tang300", "song100")
TEST_SHARE = 0.05
PROBE_STEPS, PROBE_SKIP = 30, 10  # steps timed alone per variant and corpus; the first ones not counted
CURVE_POINTS, CURVE_ITERS = 10, 10  # validation estimates per run (pretrain.py's, of CURVE_ITERS batches each)
SIZES = ("documents", "train_tokens", "val_tokens", "val_bytes", "test_documents", "test_tokens", "test_bytes")
README_VARIANTS = ("gpt2", "speedrun", "all", "nanogpt")  # the README's rows; docs/quality.md has every variant
ROOT = Path(__file__).resolve().parent
RECORD = ROOT / "docs" / "quality_results.json"
CURVE = ROOT / "docs" / "quality_curve.svg"
CURVE_CAPTION = "validation bits per byte against minutes of this machine, GPT-2's recipe (red) and the speedrun recipe (blue)"


def variants(names: list[str]) -> dict[str, list[str]]:
    """Variant name -> its pretrain.py options, groups expanded."""
    out = {}
    without = {f"speedrun{'-' if c in KEPT else '+'}{c}": [*SPEEDRUN, off if c in KEPT else on]  # each change turned
               for c, (on, off) in CHANGES.items()}  # off the speedrun recipe (or, where not in it, on), each other one as is
    for name in names:
        if name == "alone":
            out["gpt2"] = GPT2
            out.update({change: [*GPT2, on] for change, (on, _) in CHANGES.items()})
        elif name == "without":
            out["speedrun"] = SPEEDRUN
            out.update(without)
        elif name in without:
            out[name] = without[name]
        elif "=" in name:  # your own: NAME=pretrain.py options
            label, flags = name.split("=", 1)
            if not re.fullmatch(r"[\w.+-]+", label) or label in BUILT_IN:
                raise UserError(f"variant name {label!r}: use letters, digits, . + - _ only, and not a built-in name "
                                f"({', '.join(BUILT_IN)})")
            out[label] = shlex.split(flags)
        elif name in ("gpt2", "default", "all", "speedrun", "nanogpt") or name in CHANGES:
            out[name] = [*GPT2, CHANGES[name][0]] if name in CHANGES else {
                "gpt2": GPT2, "default": [], "all": [*GPT2, *(on for on, _ in CHANGES.values())], "speedrun": SPEEDRUN,
                "nanogpt": NANOGPT}[name]
        else:
            raise UserError(f"unknown variant {name!r}: choose among alone, without, {', '.join(BUILT_IN)}, "
                            "or give your own as NAME=OPTIONS")
    return out


def corpus_documents(name: str, fortunes_dir: Path) -> tuple[list[str], list[str]]:
    """The corpus as a list of documents (one fortune each; the world's paragraphs), and the
    files it came from."""
    if name == "world":
        text_file = ROOT / "data" / "world" / "pretrain.txt"
        from data.world.prepare import make_default_world_if_needed
        make_default_world_if_needed()  # on first use and after an update, as pretrain.py does
        text = text_file.read_text(encoding="utf-8")
        return [d for d in text.split("\n\n") if d.strip()], [str(text_file.relative_to(ROOT))]
    if name not in ("fortunes", "fortunes-zh"):
        raise UserError(f"unknown corpus {name!r}: choose among fortunes, fortunes-zh, world")
    files = sorted(p for p in fortunes_dir.glob("*") if p.is_file() and not p.suffix and not p.is_symlink()
                   and (p.name in CHINESE_FORTUNES) == (name == "fortunes-zh"))
    if not files:
        raise UserError(f"no {name} files in {fortunes_dir}: install them with "
                        f"apt-get install {name}, or point --fortunes_dir at them")
    docs = []
    for path in files:
        text = re.sub(r"\x1b\[[0-9;]*m", "", path.read_text(encoding="utf-8", errors="replace"))  # terminal colours
        docs += [d.strip("\n") for d in re.split(r"^%$", text, flags=re.M) if d.strip()]
    return docs, [str(p) for p in files]


def prepare_corpus(name: str, folder: Path, fortunes_dir: Path) -> dict:
    """Shuffle the documents, hold out the test share, write the rest as a dataset (train and
    validation) and the test documents as test.bin in its vocabulary. -> meta, with test_bytes."""
    docs, files = corpus_documents(name, fortunes_dir)
    docs = list(dict.fromkeys(docs))  # a document repeated word for word would be in test and train both
    source = hashlib.sha256("\n\n".join(docs).encode()).hexdigest()[:16]  # the text: the world's changes with its options
    if (folder / "test.bin").exists():  # written last: a corpus cut short is prepared again
        meta = json.loads((folder / "meta.json").read_text())
        if meta.get("source") == source:
            return meta
    import numpy as np
    from data.prepare import TOKENS, read_tokens, write_dataset
    from tokenizer import DOC, Tokenizer, cl100k
    random.Random(0).shuffle(docs)
    n_test = max(1, int(len(docs) * TEST_SHARE))
    test, rest = docs[:n_test], docs[n_test:]
    meta = write_dataset(rest, folder, 8192, 0.05, [name])
    tokenizer = Tokenizer(meta["vocab"])
    ids = np.array([t for d in test for t in [DOC] + tokenizer.from_cl100k_ids(cl100k().encode_ordinary(d))], dtype=TOKENS)
    val = read_tokens(folder / "val.bin")
    val_bytes = len(tokenizer.decode_bytes(val[val != DOC].tolist()))  # the text's bytes, as for test
    meta.update(test_tokens=len(ids), test_bytes=sum(len(d.encode()) for d in test), test_documents=n_test,
                val_bytes=val_bytes, files=files, source=source)
    atomic_write({folder / "test.bin": ids.tofile, folder / "meta.json": lambda f: f.write(json.dumps(meta).encode())})
    return meta


def bits_per_byte(checkpoint_path: Path, tokens, n_bytes: int) -> float:
    """The next-token loss summed over every test token (in windows of the model's context, each
    token predicted from the window's earlier ones), in bits, over the bytes of the test text."""
    import torch
    from checkpoint import load_checkpoint, load_model
    model, _ = load_model(load_checkpoint(checkpoint_path))
    ids, T, total = torch.from_numpy(tokens.astype("int64")), model.config.block_size, 0.0
    with torch.no_grad():
        for start in range(0, len(ids) - 1, T):
            window = ids[start:start + T + 1][None]
            total += model(window[:, :-1], window[:, 1:])[1].item() * (window.shape[1] - 1)
    return total / math.log(2) / n_bytes


def pretrain(folder: Path, run_dir: Path, args: list[str], label: str) -> list[dict]:
    """One pretrain.py run on the corpus folder; -> its log, one dict per step and validation."""
    done = subprocess.run([sys.executable, str(ROOT / "pretrain.py"), f"--dataset={folder}", f"--out_dir={run_dir}",
                           "--overwrite", *args], capture_output=True, text=True)
    if done.returncode == 2:  # an option pretrain.py refused: its one line says which
        raise UserError(f"{label}: {done.stderr.strip().splitlines()[-1].removeprefix('error: ')}")
    if done.returncode != 0:
        raise SystemExit(f"pretraining {label} failed:\n{done.stderr[-2000:]}")
    return [json.loads(line) for line in (run_dir / "log.jsonl").read_text().splitlines()]


def step_seconds(folder: Path, flags: list[str], extra: list[str], run_dir: Path, label: str) -> float:
    """The variant's seconds per step on this machine, alone and with every core: the median of
    PROBE_STEPS steps, the first PROBE_SKIP (allocation, caches warming) not counted."""
    log = pretrain(folder, run_dir, [*flags, *extra, f"--max_iters={PROBE_STEPS}", "--eval_interval=1000000",
                                     "--eval_iters=1", "--threads=0"], label)
    return statistics.median(r["seconds"] for r in log if "loss" in r and r["step"] > PROBE_SKIP)


def time_variants(probes: list[tuple[str, str, list[str]]], time_one,
                  anchors: dict[str, list[tuple[str, list[str], float]]] | None = None,
                  rounds: int = OPTIONS["probe_rounds"][0]) -> dict[tuple[str, str], float]:
    """Each (corpus, variant)'s seconds per step, as if every one were timed at the same moment:
    the first variant of a corpus is timed, and each other one right after the first is timed
    again, scaled by the first's two timings, rounds times, the median ratio kept. This host's
    speed drifts by a third within minutes, while variants of equal work timed once one after the
    other agreed within 3%, and up to 15% at step 33 (docs/quality.md): hence the rounds.
    anchors: corpus -> [(variant, flags, seconds per step)] of runs already recorded, whose moment
    stands in for the first timing (the list's first), so that new runs get the steps the recorded ones' moment gave."""
    seconds: dict[tuple[str, str], float] = {}
    first: dict[str, tuple[str, list[str]]] = {}
    for corpus, recorded in (anchors or {}).items():
        first[corpus] = recorded[0][:2]
        for variant, flags, step in recorded:
            seconds[corpus, variant] = step
    for corpus, variant, flags in probes:
        if (corpus, variant) in seconds:
            continue
        if corpus not in first:
            first[corpus] = variant, flags
            seconds[corpus, variant] = time_one(corpus, variant, flags)
        else:
            name, first_flags = first[corpus]
            ratios = []
            for _ in range(rounds):
                now = time_one(corpus, name, first_flags)
                ratios.append(time_one(corpus, variant, flags) / now)
            seconds[corpus, variant] = seconds[corpus, name] * statistics.median(ratios)
        print(f"{corpus:<12} {variant:<16} {seconds[corpus, variant]:.3f} s per step", flush=True)
    return seconds


def retime(record: dict, corpora: list[str], chosen: dict[str, list[str]], options: dict[str, dict], extra: list[str],
           time_one, machine: str, rounds: int) -> list[str]:
    """At full length a run's steps are its own and its bits per byte do not depend on the host, only
    its minutes do: the other variants' full-length runs get the seconds a step that the first
    variant's clock gives them (its recorded runs' mean seconds a step, the minutes its row shows),
    timed now one after the other as for a run made now; their minutes and curve follow. The first's
    runs stay as they are; each retimed run keeps where it trained (machine) and names its clock."""
    if "gpt2" in chosen and next(iter(chosen)) != "gpt2":
        raise UserError("--retime: gpt2's minutes are what the half-time runs were given half of: give gpt2 first")
    tables = {}
    for corpus in corpora:  # every corpus checked before anything is timed
        runs = [r for r in record["results"] if (r["corpus"], r["minutes"], r["pretrain_args"]) == (corpus, 0, extra)
                and r["variant"] in chosen and trained(r["options"]) == trained(options[r["variant"]])]
        recorded = [v for v in chosen if any(r["variant"] == v for r in runs)]
        if len(recorded) < 2 or recorded[0] != next(iter(chosen)):
            raise UserError(f"--retime: {corpus} needs full-length runs of {next(iter(chosen))} (the clock) and of another "
                            f"variant in the record, with these --pretrain_args; run them first with --minutes=0")
        tables[corpus] = runs, recorded
    lines = []
    for corpus, (runs, (first, *others)) in tables.items():
        clock = [r for r in runs if r["variant"] == first]
        anchor = statistics.mean(r["step_seconds"] for r in clock)
        clock_anchor = {corpus: [(first, chosen[first], anchor)]}
        seconds = time_variants([(corpus, v, chosen[v]) for v in others], time_one, clock_anchor, rounds)
        for r in runs:
            if r["variant"] in others:
                now = seconds[corpus, r["variant"]]
                scale = now / r["step_seconds"]
                r.update(step_seconds=now, train_minutes=round(r["steps"] * now / 60, 2), clock=clock[0]["machine"],
                         timed_on=machine, curve=[[round(m * scale, 3), bpb] for m, bpb in r["curve"]])
        lines += [f"{corpus}: {sum(r['variant'] == v for r in runs)} run(s) of {v} retimed to {seconds[corpus, v]:.3f} "
                  f"s a step on the clock of {first}'s {anchor:.3f}" for v in others]
    return lines


def this_machine() -> str:
    """The CPU (or GPU) and its matmul peak in pretrain.py's precision, measured now: the minutes
    of rows from two machines of the same name differ by as much as their peaks."""
    import torch
    from bench import matmul_peak
    from machine import choose_device, choose_dtype, machine_name
    device = choose_device("auto")
    dtype = choose_dtype("auto", device)
    peak = matmul_peak(torch, device, getattr(torch, dtype))
    name = torch.cuda.get_device_name(device) if device.startswith("cuda") else machine_name()
    return f"{name} ({dtype} matmul peak {round(peak / 1e10) * 10:,} GFLOP/s)"


def train_and_score(corpus: str, folder: Path, meta: dict, variant: str, flags: list[str], minutes: float, steps: int,
                    seconds: float, seed: int, run_dir: Path, extra: list[str], threads: int, options: dict,
                    machine: str, gpt2_seconds: float | None) -> dict:
    """One pretraining run of the variant for the given steps, and its scores: bits per byte on the
    whole validation and test splits, and the curve of validation estimates against the minutes
    those steps take this machine (steps times its seconds per step, timed alone); gpt2_seconds: gpt2's,
    timed beside it, where the run was given half of gpt2's time."""
    from data.prepare import read_tokens
    start = time.perf_counter()
    log = pretrain(folder, run_dir, [*flags, *extra, f"--max_iters={steps}", f"--seed={seed}", f"--threads={threads}",
                                     f"--eval_interval={-(-steps // CURVE_POINTS)}", f"--eval_iters={CURVE_ITERS}"],
                   f"{variant} on {corpus}")
    wall = time.perf_counter() - start
    scores = {split: round(bits_per_byte(run_dir / "ckpt.pt", read_tokens(folder / f"{split}.bin"),
                                         meta[f"{split}_bytes"]), 5) for split in ("val", "test")}
    bits_per_token_to_byte = meta["val_tokens"] / meta["val_bytes"] / math.log(2)
    return {"corpus": corpus, "variant": variant, "minutes": minutes,
            "gpt2_step_seconds": gpt2_seconds, "seed": seed, "flags": flags,
            "pretrain_args": extra, "options": {**options, "seed": seed}, "machine": machine, "steps": steps, "step_seconds": seconds,
            "train_minutes": round(steps * seconds / 60, 2), "wall_seconds": round(wall, 1),
            "val_bits_per_byte": scores["val"], "test_bits_per_byte": scores["test"],
            "curve": [[round(r["step"] * seconds / 60, 3), round(r["val_loss"] * bits_per_token_to_byte, 4)]
                      for r in log if "val_loss" in r]}


def report(record: dict, minutes: float, split: str = "test", only: tuple[str, ...] | None = None) -> str:
    """The table of one budget: bits per byte on the split per variant (or only these) and corpus
    (mean over seeds, with the spread where there are several), its ratios to GPT-2's recipe and
    to nanoGPT's, and the steps taken (and their minutes, where each variant ran its own length)."""
    rows = [r for r in record["results"] if r["minutes"] == minutes and (only is None or r["variant"] in only)]
    corpora = sorted({r["corpus"] for r in rows}, key=lambda c: ["fortunes", "fortunes-zh", "world"].index(c))
    cells = {}
    for r in rows:
        cells.setdefault((r["variant"], r["corpus"]), []).append(r)
    budget = f"{round(minutes, 2):g} minutes of pretraining" if minutes else "each variant's own number of steps"
    where = machines(rows, corpora)
    halved = sorted({r["corpus"] for r in rows if r.get("gpt2_step_seconds")}, key=corpora.index)  # --half_time's
    commands = []
    if len(halved) < len(corpora):
        commands.append(f"`python quality.py --minutes={round(minutes, 2):g}`")
    if halved:
        commands.append(f"`python quality.py --half_time` ({', '.join(halved)})")
    command = " and ".join(commands)
    lines = [f"{'Test' if split == 'test' else 'Validation'} bits per byte after {budget} (lower is better; then the "
             "steps taken" + ("" if minutes else " and the minutes they take") + f") on {where}, {command}:", "",
             "| variant | " + " | ".join(corpora) + " |", "| --- |" + " --- |" * len(corpora)]
    for variant in sorted({v for v, _ in cells}, key=lambda v: (BUILT_IN.index(v) if v in BUILT_IN else len(BUILT_IN), v)):
        line = f"| {variant} |"
        for corpus in corpora:
            runs = cells.get((variant, corpus), [])
            if not runs:
                line += " |"
                continue
            bpb = statistics.mean(r[f"{split}_bits_per_byte"] for r in runs)
            text = f"{bpb:.3f}" + (f" ± {statistics.stdev(r[f'{split}_bits_per_byte'] for r in runs):.3f}" if len(runs) > 1 else "")
            ratios = [f"{bpb / statistics.mean(r[f'{split}_bits_per_byte'] for r in cells[(base, corpus)]):.1%} of {base}"
                      for base in ("gpt2", "nanogpt") if (base, corpus) in cells and base != variant]
            text += f" ({', '.join(ratios)})" if ratios else ""
            text += f"; {round(statistics.mean(r['steps'] for r in runs)):,}"
            line += f" {text}" + ("" if minutes else f", {statistics.mean(r['train_minutes'] for r in runs):.1f} min") + " |"
        lines.append(line)
    if not minutes and split == "test" and only is None:  # the README's rows: half_time says it there
        lines += catch_up(rows, corpora)
    return "\n".join(lines) + "\n"


def ablation(record: dict, minutes: float) -> str:
    """Each change's effect at one budget, on validation bits per byte (positive: the change pays):
    alone on gpt2, and within speedrun (what removing it costs, or adding one speedrun leaves out
    gives), beside the spread of the two recipes' seeds, the size an effect must clear to be one. A
    corpus where only one recipe ran still gets a column, "–" where a change's base is missing."""
    bpb, halved = {}, False
    for r in record["results"]:
        if r["minutes"] == minutes:
            bpb.setdefault((r["variant"], r["corpus"]), []).append(r["val_bits_per_byte"])
            halved = halved or bool(r.get("gpt2_step_seconds"))  # --half_time's budget, not --minutes'
    budget = "--half_time" if halved else f"--minutes={round(minutes, 2):g}"
    corpora = [c for c in ("fortunes", "fortunes-zh", "world") if ("gpt2", c) in bpb or ("speedrun", c) in bpb]
    def gain(without: str, with_: str, corpus: str, base: str) -> str:  # without's bits per byte less with's, in % of base's
        if (without, corpus) not in bpb or (with_, corpus) not in bpb:
            return "–"
        mean = {v: statistics.mean(bpb[v, corpus]) for v in (without, with_)}
        return f"{(mean[without] - mean[with_]) / mean[base]:+.1%}"
    def in_speedrun(change: str, corpus: str) -> str:  # removed from the recipe, or added where it leaves it out
        return gain(f"speedrun-{change}", "speedrun", corpus, "speedrun") if change in KEPT else \
            gain("speedrun", f"speedrun+{change}", corpus, "speedrun")
    changes = [c for c in CHANGES if any((v, k) in bpb for v in (c, f"speedrun-{c}", f"speedrun+{c}") for k in corpora)]
    if not changes:
        return ""
    when = f"after {round(minutes, 2):g} minutes of pretraining" if minutes else "at each variant's own number of steps"
    lines = [f"Each change's gain {when}, in validation bits per byte (positive: the "
             "change pays): alone, gpt2's less gpt2 with the change, in % of gpt2's; in speedrun, speedrun without the "
             "change less speedrun, in % of speedrun's (what removing it costs; for a change speedrun leaves out, "
             "marked \"added\", speedrun less speedrun with it). Each variant's seeds' mean, "
             f"`python quality.py {budget} --variants=alone,without`:", "",
             "| change | " + " | ".join(f"{c}: alone / in speedrun" for c in corpora) + " |",
             "| --- |" + " --- |" * len(corpora)]
    lines += [f"| {c}{'' if c in KEPT else ' (added)'} | " + " | ".join(f"{gain('gpt2', c, k, 'gpt2')} / {in_speedrun(c, k)}"
                                                                    for k in corpora) + " |" for c in changes]
    def spread(variant: str, corpus: str) -> str:  # one seed's typical distance from the mean, in % of it
        runs = bpb.get((variant, corpus), [])
        if not runs:
            return "–"
        return f"±{statistics.stdev(runs) / statistics.mean(runs):.1%} ({len(runs)})" if len(runs) > 1 else "one seed"
    lines.append("| seeds' spread (how many) | " + " | ".join(f"{spread('gpt2', k)} / {spread('speedrun', k)}"
                                                           for k in corpora) + " |")
    return "\n".join(lines) + "\n"


def machines(rows: list[dict], corpora: list[str]) -> str:
    """Whose minutes: each machine once, its peak's range where runs measured it differently (one
    machine's peak moves by a tenth between runs), with its corpora where there are several machines."""
    runs: dict[tuple, list[tuple]] = {}  # (name, precision) -> each run's (corpus, measured peak)
    for r in rows:
        clock = r.get("clock", r["machine"])  # a retimed run's minutes are its clock's
        m = re.fullmatch(r"(.*) \((\w+) matmul peak ([\d,]+) GFLOP/s\)", clock)
        key, peak = ((m[1], m[2]), int(m[3].replace(",", ""))) if m else ((clock, ""), 0)
        runs.setdefault(key, []).append((r["corpus"], peak))
    parts = []
    for (name, precision), its in sorted(runs.items()):
        if precision:
            peaks = sorted({peak for _, peak in its})
            span = f"{peaks[0]:,}" if len(peaks) == 1 else f"{peaks[0]:,} to {peaks[-1]:,}"
            name += f" ({precision} matmul peak {span} GFLOP/s{' as measured at each run' if len(peaks) > 1 else ''})"
        parts.append(name + (f" ({', '.join(c for c in corpora if any(corpus == c for corpus, _ in its))})" if len(runs) > 1 else ""))
    return ", ".join(parts)


def catch_up(rows: list[dict], corpora: list[str]) -> list[str]:
    """When speedrun's validation curve first gets down to where gpt2's ends (both pretrain.py's
    estimates, the first seed of each), on each corpus that has both, in the table's minutes: each
    variant's steps at the mean of its runs' timed seconds (seeds run in other invocations were timed apart)."""
    parts = []
    for corpus in corpora:
        runs: dict[str, list] = {}
        for r in sorted((r for r in rows if r["corpus"] == corpus), key=lambda r: r["seed"]):
            runs.setdefault(r["variant"], []).append(r)
        if "gpt2" in runs and "speedrun" in runs:
            target, total = runs["gpt2"][0]["curve"][-1][1], statistics.mean(r["train_minutes"] for r in runs["gpt2"])
            first = runs["speedrun"][0]  # its curve's minutes at the mean seconds a step
            scale = statistics.mean(r["step_seconds"] for r in runs["speedrun"]) / first["step_seconds"]
            reached = next((m * scale for m, bpb in first["curve"] if bpb <= target), None)
            parts.append(f"{corpus}: after {reached:.1f} of gpt2's {total:.1f} min ({reached / total:.0%})" if reached is not None
                         else f"{corpus}: not within its run")
    return ["", "Where speedrun's validation curve first reaches gpt2's final value: " + "; ".join(parts) + "."] if parts else []


def half_of_gpt2(rows: list[dict], corpus: str, pretrain_args: list[str]) -> tuple[float, float, list[dict]]:
    """gpt2's full-length runs on the corpus with these pretrain_args: half their mean minutes,
    half their mean steps, and the runs (none: zeros)."""
    gpt2 = [r for r in rows if (r["corpus"], r["variant"], r["minutes"], r["pretrain_args"]) == (corpus, "gpt2", 0, pretrain_args)]
    half = [statistics.mean(r[k] for r in gpt2) / 2 if gpt2 else 0 for k in ("train_minutes", "steps")]
    return half[0], half[1], gpt2


def half_time(record: dict) -> str:
    """What speedrun reaches in half of gpt2's full-length time (its runs at the largest budget
    within that half), against where gpt2 ends: validation bits per byte, on each corpus that has both."""
    rows, parts = record["results"], []
    for corpus in ("fortunes", "fortunes-zh", "world"):
        speedrun = [r for r in rows if (r["corpus"], r["variant"]) == (corpus, "speedrun") and r["minutes"]]
        for args in sorted({tuple(r["pretrain_args"]) for r in speedrun}):  # each against gpt2 with its pretrain_args
            half, _, gpt2 = half_of_gpt2(rows, corpus, list(args))
            same = [r for r in speedrun if tuple(r["pretrain_args"]) == args]
            budget = max((r["minutes"] for r in same if r["minutes"] <= half), default=None)
            if budget is None:
                continue
            runs = [r["val_bits_per_byte"] for r in same if r["minutes"] == budget]
            spread = f" ± {statistics.stdev(runs):.3f}" if len(runs) > 1 else ""
            end = statistics.mean(r["val_bits_per_byte"] for r in gpt2)
            parts.append(f"{corpus}, {round(budget, 2):g} of gpt2's {2 * half:.1f} min: {statistics.mean(runs):.3f}{spread} "
                         f"({len(runs)} seed{'s' * (len(runs) > 1)}) against {end:.3f} ({len(gpt2)} seed{'s' * (len(gpt2) > 1)})")
    if not parts:
        return ""
    return ("Given at most half of gpt2's time, its schedule fitted to it (`python quality.py --variants=speedrun "
            "--seeds=3 --half_time`, or `--minutes=M`), speedrun's validation bits per byte against where gpt2 ends: " + "; ".join(parts) + ".\n")


def curve_svg(record: dict, variants: tuple[str, ...] = ("gpt2", "speedrun")) -> str:
    """Validation bits per byte against minutes, one panel per corpus, a line per variant (the
    mean over seeds of pretrain.py's estimates), from the runs of each variant's own length."""
    curves = {}
    for r in record["results"]:
        if r["minutes"] == 0 and r["variant"] in variants:
            curves.setdefault(r["corpus"], {}).setdefault(r["variant"], []).append(r["curve"])
    width, height, pad = 300, 220, 40
    panels = []
    for i, (corpus, lines) in enumerate(sorted(curves.items())):
        mean = {v: [[statistics.mean(c[k][j] for c in runs) for j in (0, 1)] for k in range(min(map(len, runs)))]
                for v, runs in lines.items()}
        x_max = max(x for points in mean.values() for x, _ in points)
        y_min = min(y for points in mean.values() for _, y in points)
        y_max = max(y for points in mean.values() for x, y in points if x >= x_max / 5)  # the first steps' fall cut off
        def at(x, y):  # minutes and bits per byte -> the panel's pixels (values above y_max drawn at the top)
            across = i * width + pad + x / x_max * (width - 1.5 * pad)
            down = pad + (1 - (min(y, y_max) - y_min) / (y_max - y_min or 1)) * (height - 2 * pad)
            return f"{across:.1f},{down:.1f}"
        panel = [f'<text x="{i * width + width / 2:.0f}" y="20" text-anchor="middle">{corpus}</text>',
                 f'<polyline fill="none" stroke="#999" points="{at(0, y_max)} {at(0, y_min)} {at(x_max, y_min)}"/>',
                 f'<text x="{i * width + pad - 4}" y="{pad + 4}" text-anchor="end">{y_max:.2f}</text>',
                 f'<text x="{i * width + pad - 4}" y="{height - pad + 4}" text-anchor="end">{y_min:.2f}</text>',
                 f'<text x="{i * width + pad}" y="{height - pad + 16}" text-anchor="middle">0</text>',
                 f'<text x="{i * width + width - pad / 2:.0f}" y="{height - pad + 16}" text-anchor="end">{x_max:.0f} min</text>']
        panel += [f'<polyline fill="none" stroke="{colour}" stroke-width="2" points="{" ".join(at(x, y) for x, y in mean[v])}"/>'
                  for v, colour in zip(variants, ("#d62728", "#1f77b4")) if v in mean]
        panels += panel
    legend = [f'<text x="{pad + 150 * k}" y="{height + 10}" fill="{colour}">{v}</text>'
              for k, (v, colour) in enumerate(zip(variants, ("#d62728", "#1f77b4")))]
    return (f'<svg xmlns="http://www.w3.org/2000/svg" width="{width * max(1, len(curves))}" height="{height + 20}" '
            f'font-family="sans-serif" font-size="12">\n' + "\n".join(panels + legend) + "\n</svg>\n")


def corpora_table(record: dict) -> str:
    lines = ["| corpus | documents (train and validation) | train tokens | validation tokens | validation bytes | "
             "test documents | test tokens | test bytes |",
             "| --- |" + " --- |" * len(SIZES)]
    lines += [f"| {name} | " + " | ".join(f"{sizes[k]:,}" for k in SIZES) + " |" for name, sizes in record["corpora"].items()]
    return "\n".join(lines) + "\n"


def docs_blocks(record: dict) -> dict[Path, str]:
    """What the record puts between the quality markers of README.md and docs/quality.md."""
    half = [line for line in [half_time(record)] if line]  # none where no run fits half of gpt2's time
    every = [corpora_table(record)] + [table for minutes in sorted({r["minutes"] for r in record["results"]})
                                       for table in (report(record, minutes, "val"), report(record, minutes, "test"),
                                                     ablation(record, minutes)) if table] + half
    seeds = {}  # the README's short budget: the longest where gpt2 and speedrun both ran 3 seeds on a corpus
    for r in record["results"]:
        seeds.setdefault((r["minutes"], r["corpus"], r["variant"]), set()).add(r["seed"])
    compared = [m for m, c, v in seeds
                if m and v == "gpt2" and min(len(seeds[m, c, v]), len(seeds.get((m, c, "speedrun"), ()))) >= 3]
    readme = [report(record, max(compared), "test", README_VARIANTS)] if compared else []
    if any(r["minutes"] == 0 for r in record["results"]):  # the comparison at full length, half its time, its curves
        readme = [report(record, 0, "test", ("gpt2", "speedrun")), *half, f"![{CURVE_CAPTION}]({CURVE.relative_to(ROOT)})\n",
                  *readme]
    return {ROOT / "README.md": "\n".join(readme), ROOT / "docs" / "quality.md": "\n".join(every)}


def same_text(then: dict, now: dict) -> bool:
    """Whether a corpus's sizes and "source" then are now's (a record from before "source": by its sizes)."""
    return all(then.get(k, v) == v for k, v in now.items())


def follow_corpus(record: dict, corpus: str, now: dict) -> list[str]:
    """A corpus whose text changed (the world's, say): its results on the earlier text are set aside
    (scores and curves kept, not reused or shown); those set aside from the text it has again come
    back. record["corpora"][corpus] becomes now (its sizes and "source"). -> what moved, in lines"""
    before = record.setdefault("corpora", {}).get(corpus, now)
    aside, said = record.setdefault("set_aside", []), []
    if not same_text(before, now):
        stale = [r for r in record["results"] if r["corpus"] == corpus]
        record["results"] = [r for r in record["results"] if r["corpus"] != corpus]
        aside += [{**r, "corpus_then": before} for r in stale]
        if stale:
            said.append(f"{corpus}: its text changed since the record's {len(stale)} results on it: they are set aside "
                        "(under \"set_aside\" in the record) and not reused or shown")
    back = [r for r in aside if r["corpus"] == corpus and same_text(r["corpus_then"], now)  # the text they measured
            and "variant_then" not in r]  # (follow_variants brings back its own)
    if back:
        record["set_aside"] = [r for r in aside if r not in back]
        record["results"] += [{k: v for k, v in r.items() if k != "corpus_then"} for r in back]
        said.append(f"{corpus}: its text is again the one {len(back)} set-aside results measured: they are back")
    record["corpora"][corpus] = now
    return said


def built_in_name(ran: dict, pretrain_args: list[str], pretrain_options: dict, cache: dict, first: str = "") -> str | None:
    """The built-in variant that runs these options with these --pretrain_args: first if it does (built-ins
    but for --max_iters coincide under --pretrain_args=--max_iters=N), else the first in BUILT_IN's order.
    An option the run did not know (pretrain.py's since) counts as its default today. cache: name -> options."""
    ran = {**trained(parse_args(pretrain_options, "", "", argv=[])[0]), **trained(ran)}
    for name, flags in sorted(variants(BUILT_IN).items(), key=lambda item: item[0] != first):
        key = name, tuple(pretrain_args)
        if key not in cache:
            cache[key] = trained(parse_args(pretrain_options, "", "", argv=[*flags, *pretrain_args])[0])
        if cache[key] == ran:
            return name
    return None


def follow_variants(record: dict, pretrain_options: dict) -> list[str]:
    """A built-in variant is written in pretrain.py's options and moves when the recipe does (step 24:
    the cap of 15 became 30). A result under a built-in name that no longer runs its options is filed
    under the built-in that runs them now, or set aside (kept, not reused or shown) until one does; a
    result under one's own name is filed under the built-in that runs its options (main files new
    runs so too). No row then mixes two recipes. (An own name is not remembered: such a result, its
    recipe moved away, is set aside.) -> what moved, in lines"""
    cache, moved, corpora = {}, Counter(), record.setdefault("corpora", {})

    def name_now(r: dict) -> str | None:  # a result that recorded no options stays as filed
        return built_in_name(r["options"], r["pretrain_args"], pretrain_options, cache, r["variant"]) \
            if r.get("options") else r["variant"]
    results, record["results"], aside = record["results"], [], []
    taken = {run_key(r) for r in results if name_now(r) == r["variant"]}
    for r in results:
        name = name_now(r)
        refiled = {**r, "variant": name}
        if name and name != r["variant"] and run_key(refiled) not in taken:
            taken.add(run_key(refiled))
            moved[r["variant"], f"what {name} runs now, filed under it"] += 1
            record["results"].append(refiled)
        elif name != r["variant"] and r["variant"] in BUILT_IN:  # "variant_then": set aside here, not for its text
            moved[r["variant"], "what no built-in variant runs now (the recipe moved), set aside" if not name else
                  f"what {name} runs now, which has that run already: set aside"] += 1
            aside.append({**r, "variant_then": r["variant"], "corpus_then": corpora.get(r["corpus"], {})})
        else:
            record["results"].append(r)
    for r in record.get("set_aside", []):  # those set aside here come back where a built-in runs them again
        name = "variant_then" in r and same_text(r["corpus_then"], corpora.get(r["corpus"], {})) and name_now(r)
        back = {**{k: v for k, v in r.items() if k not in ("variant_then", "corpus_then")}, "variant": name}
        if name and run_key(back) not in taken:
            taken.add(run_key(back))
            moved["set aside", f"what {name} runs again, back"] += 1
            record["results"].append(back)
        else:
            aside.append(r)
    record["set_aside"] = aside
    return [f"{count} {'set-aside ' * (then == 'set aside')}run{'s' * (count > 1)}"
            f"{f' of {then}' * (then != 'set aside')}: {what}" for (then, what), count in moved.items()]


def write_record(record: dict, path: Path) -> None:
    text = json.dumps(record, indent=1)
    atomic_write({path: lambda f: f.write(text.encode())})


def run_key(r: dict) -> tuple:
    """What one result stands for: a run given half of gpt2's time is kept apart from one given as many minutes."""
    return r["corpus"], r["variant"], r["minutes"], r["seed"], bool(r.get("gpt2_step_seconds"))


def trained(options: dict) -> dict:
    """The options that shape the trained model, but for its seed (a run's own field): not how often
    or how long it is validated."""
    return {k: v for k, v in options.items() if k not in ("eval_interval", "eval_iters", "seed")}


def main() -> None:
    config, _, typed = parse_args(OPTIONS, "python quality.py [--corpora=...] [--variants=...] [--minutes=2]", __doc__)
    if config["half_time"] and "minutes" in typed:
        raise UserError("--half_time sets each run's time (half of gpt2's): leave --minutes out")
    if config["retime"] and (config["minutes"] or config["half_time"]):
        raise UserError("--retime is for runs at full length, whose steps do not depend on the clock: give --minutes=0")
    out_dir, fortunes_dir = Path(config["out_dir"]), Path(config["fortunes_dir"])
    chosen = variants(config["variants"].split(","))
    extra = split_args(config["pretrain_args"], "--pretrain_args")
    from pretrain import OPTIONS as PRETRAIN_OPTIONS  # each variant's options checked now, not hours into the runs
    options = {}  # what each variant runs, pretrain.py's defaults filled in: a result is reused only for the same
    for variant, flags in chosen.items():
        if any(flag.startswith("--time") for flag in [*flags, *extra]):
            raise UserError(f"variant {variant}: --time is quality.py's to set (--minutes); leave it out")
        try:
            options[variant] = parse_args(PRETRAIN_OPTIONS, "", "", argv=[*flags, *extra])[0]
        except UserError as e:
            raise UserError(f"variant {variant}: {e}") from None
    cache = {}
    for variant in [v for v in chosen if v not in BUILT_IN]:  # one's own name for a built-in's options: filed as it
        if name := built_in_name(options[variant], extra, PRETRAIN_OPTIONS, cache):
            print(f"variant {variant}: what {name} runs now, filed under it")
            chosen[name], options[name] = chosen.pop(variant), options.pop(variant)
    corpora = config["corpora"].split(",")
    folders, metas = {}, {}
    for corpus in corpora:  # all prepared first: a missing corpus stops the run before any training
        folders[corpus] = out_dir / "data" / corpus
        metas[corpus] = meta = prepare_corpus(corpus, folders[corpus], fortunes_dir)
        print(f"{corpus}: {meta['train_tokens']:,} train, {meta['val_tokens']:,} validation, "
              f"{meta['test_tokens']:,} test tokens ({meta['test_documents']:,} documents held out)")
    results_path = out_dir / "results.json"
    record = json.loads(results_path.read_text()) if results_path.exists() else {"results": []}
    for corpus in corpora:
        for line in follow_corpus(record, corpus, {k: v for k, v in metas[corpus].items() if k in (*SIZES, "source")}):
            print(line)
    for line in follow_variants(record, PRETRAIN_OPTIONS):
        print(line)
    write_record(record, results_path)  # what was set aside or came back, even if nothing runs
    budgets, half_steps = {corpus: config["minutes"] for corpus in corpora}, {}  # the minutes each corpus's runs are filed at
    for corpus in corpora if config["half_time"] else ():
        budgets[corpus], half_steps[corpus], _ = half_of_gpt2(record["results"], corpus, extra)
        if not budgets[corpus]:
            again = f" --pretrain_args={shlex.quote(config['pretrain_args'])}" if extra else ""
            raise UserError(f"--half_time: {results_path} has no gpt2 run at its own length on {corpus} with these "
                            f"--pretrain_args: run python quality.py --corpora={corpus} --variants=gpt2 --minutes=0{again} first")
    def time_one(corpus: str, variant: str, flags: list[str]) -> float:
        return step_seconds(folders[corpus], flags, extra, out_dir / "runs" / "probe", variant)
    if config["retime"]:
        for line in retime(record, corpora, chosen, options, extra, time_one, this_machine(), config["probe_rounds"]):
            print(line)
        write_record(record, results_path)
    from machine import choose_device, choose_dtype
    precision = f"({choose_dtype('auto', choose_device('auto'))} matmul peak"  # reused only from a machine alike
    todo = [] if config["retime"] else [(corpus, variant, flags, seed) for corpus in corpora
            for variant, flags in chosen.items() for seed in range(1337, 1337 + config["seeds"])
            if config["rerun"] or not any((*run_key(r), trained(r["options"]))
                                          == (corpus, variant, budgets[corpus], seed, corpus in half_steps,
                                              trained(options[variant])) and precision in r["machine"]
                                          for r in record["results"])]
    machine = this_machine() if todo else ""
    # A table continued (runs of this budget that stay, from this CPU): its new runs on their clock
    anchors, replaced = {}, {(c, v, budgets[c], seed, c in half_steps) for c, v, _, seed in todo}
    for corpus in dict.fromkeys(t[0] for t in todo):  # at full length too: its minutes
        kept = [r for r in record["results"] if r["corpus"] == corpus and r["minutes"] == budgets[corpus]
                and bool(r.get("gpt2_step_seconds")) == (corpus in half_steps) and run_key(r) not in replaced
                and r["pretrain_args"] == extra and r["machine"].split(" (")[0] == machine.split(" (")[0]]
        if kept:  # under --half_time gpt2's recorded seconds are the clock, and the kept run's ratio to it stays
            anchors[corpus] = ([("gpt2", GPT2, kept[0]["gpt2_step_seconds"])] if corpus in half_steps else []) + \
                              [(kept[0]["variant"], kept[0]["flags"], kept[0]["step_seconds"])]
            print(f"{corpus}: new runs timed against {kept[0]['variant']}, whose recorded runs took "
                  f"{kept[0]['step_seconds']:.3f} s a step (--rerun to time every run anew)")
    probes = []  # corpus by corpus; under --half_time gpt2 first, the yardstick timed beside its variants
    for corpus in dict.fromkeys(t[0] for t in todo):
        if corpus in half_steps:
            probes.append((corpus, "gpt2", GPT2))
        probes += [t[:3] for t in todo if t[0] == corpus]
    seconds = time_variants(probes, time_one, anchors, config["probe_rounds"])  # before any run shares the machine
    threads = max(1, (os.cpu_count() or 1) // config["jobs"])
    with ThreadPoolExecutor(config["jobs"]) as pool:
        runs = []
        for corpus, variant, flags, seed in todo:
            if corpus in half_steps:  # half of gpt2's steps at gpt2's speed now, in this variant's steps at its own
                steps = max(1, round(half_steps[corpus] * seconds[corpus, "gpt2"] / seconds[corpus, variant]))
            elif budgets[corpus]:
                steps = max(1, round(budgets[corpus] * 60 / seconds[corpus, variant]))
            else:
                steps = options[variant]["max_iters"]
            run_dir = out_dir / "runs" / corpus / variant / f"{'half' if corpus in half_steps else f'{budgets[corpus]:g}m'}-{seed}"
            runs.append(pool.submit(train_and_score, corpus, folders[corpus], metas[corpus], variant, flags, budgets[corpus],
                                    steps, seconds[corpus, variant], seed, run_dir, extra, threads, options[variant],
                                    machine, seconds[corpus, "gpt2"] if corpus in half_steps else None))
        for done in as_completed(runs):
            result = done.result()
            print(f"{result['corpus']:<12} {result['variant']:<16} seed {result['seed']}: {result['steps']:,} steps "
                  f"({result['train_minutes']:.1f} min), validation {result['val_bits_per_byte']:.4f}, "
                  f"test {result['test_bits_per_byte']:.4f} bits/byte", flush=True)
            record["results"] = [r for r in record["results"] if run_key(r) != run_key(result)] + [result]
            write_record(record, results_path)  # after every run: nothing lost
    markdown = "".join(report(record, budget) for budget in sorted(set(budgets.values())))
    print("\n" + markdown + ("\n" + half_time(record) if config["half_time"] else ""))
    if config["readme"]:  # the README: the full-length and a seeded short comparison; docs/quality.md every table
        updated = update_docs("quality", docs_blocks(record), RECORD, json.dumps(record, indent=1), {CURVE: curve_svg(record)})
        print(f"updated {', '.join(str(p.relative_to(ROOT)) for p in updated)} and {RECORD.relative_to(ROOT)}"
              if updated else "README.md and docs/quality.md have no quality markers: left as they are")


if __name__ == "__main__":
    run(main)
