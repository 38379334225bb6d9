"""
Which pretraining gives the best model per minute of this machine? Each variant of the model and
its optimizer is pretrained for the same wall time on each corpus, then scored on held-out text
it never saw, in bits per byte: the loss summed over the test tokens, over the bytes they stand
for (comparable across tokenizers and corpora; lower is better).

    python quality.py                                     # today's default, each change alone, all of them, nanoGPT's recipe
    python quality.py --minutes=10 --variants=default,all --corpora=fortunes
    python quality.py --variants=without                  # all changes, each one removed in turn (all-rope, ...)
    python quality.py --variants="default,wide=--n_embd=384 --n_head=6"    # your own variant
    python quality.py --readme                            # also write the tables into README.md and docs/quality.md

Corpora: real text that no one here wrote, from Debian's packages, and the built-in world:
    fortunes     English: the fortune-cookie files of Debian's `fortunes` (quotations, jokes, verse)
    fortunes-zh  mostly Chinese: Debian's `fortunes-zh` (Tang and Song poetry, Debian's documents in Chinese)
    world        the built-in world's pretraining text
(`apt-get install fortunes fortunes-zh` puts them in /usr/share/games/fortunes.) The documents of
a corpus are shuffled with a fixed seed; 5% are held out as the test set before anything is run,
and pretrain.py's validation split is 5% of the rest: settings are chosen on validation, never on
test. Every result is kept in out/quality/results.json, keyed by corpus, variant, minutes and seed,
so that runs of a few variants at a time add up to one table; what it holds is not run again
(unless --rerun).
"""
from __future__ import annotations

import json
import math
import random
import re
import shlex
import statistics
import subprocess
import sys
import time
from pathlib import Path

from cli import UserError, atomic_write, parse_args, run, update_docs

OPTIONS = {
    "corpora": ("fortunes,fortunes-zh,world", "which corpora (see above)"),
    "variants": ("alone,all,nanogpt", "variants or groups: alone (default and each change alone), without "
                 "(all, and all with each change removed), default, all, nanogpt, a change's name, "
                 "or your own as NAME=OPTIONS (\"fast=--muon --learning_rate=3e-3\")"),
    "minutes": (2.0, "wall time of each pretraining run", "(0, inf)"),
    "seeds": (1, "runs per variant and corpus, seeds 1337, 1338, ...", "[1, inf)"),
    "out_dir": ("out/quality", "corpora, runs and results.json go here"),
    "pretrain_args": ("", "more pretrain.py options for every run, e.g. \"--n_layer=2 --eval_interval=50\""),
    "fortunes_dir": ("/usr/share/games/fortunes", "where Debian's fortunes and fortunes-zh put their files"),
    "rerun": (False, "run again what results.json already holds (by default its result is kept)"),
    "readme": (False, "write the tables into README.md and docs/quality.md, with the record docs/quality_results.json"),
}
# The changes since GPT-2 that the NanoGPT speedrun made, one pretrain.py option each
CHANGES = {"rope": "--rope", "qk_norm": "--qk_norm", "relu2": "--relu2", "zero_init": "--zero_init",
           "untied": "--untied", "logit_cap": "--logit_cap=15", "muon": "--muon"}
# nanoGPT's README, "I only have a macbook": config/train_shakespeare_char.py with its CPU overrides
NANOGPT = ["--block_size=64", "--batch_size=12", "--n_layer=4", "--n_head=4", "--n_embd=128", "--dropout=0.0",
           "--learning_rate=1e-3", "--min_lr=1e-4", "--warmup_iters=100", "--beta2=0.99"]
BUILT_IN = ["default", *CHANGES, "all", *(f"all-{c}" for c in CHANGES), "nanogpt"]  # in the tables' order
CHINESE_FORTUNES = ("chinese", "tang300", "song100")
TEST_SHARE = 0.05
QUIET = ["--eval_interval=1000000", "--eval_iters=2"]  # pretrain.py's own estimates: scored here, on whole splits
SIZES = ("documents", "train_tokens", "val_tokens", "val_bytes", "test_documents", "test_tokens", "test_bytes")
README_VARIANTS = ("default", "all", "nanogpt")  # the README's rows; docs/quality.md has every variant
ROOT = Path(__file__).resolve().parent
RECORD = ROOT / "docs" / "quality_results.json"


def variants(names: list[str]) -> dict[str, list[str]]:
    """Variant name -> its pretrain.py options, groups expanded."""
    out = {}
    for name in names:
        if name == "alone":
            out["default"] = []
            out.update({change: [flag] for change, flag in CHANGES.items()})
        elif name == "without":
            out["all"] = list(CHANGES.values())
            out.update({f"all-{change}": [f for c, f in CHANGES.items() if c != change] for change in CHANGES})
        elif "=" in name:  # your own: NAME=pretrain.py options
            label, flags = name.split("=", 1)
            if not re.fullmatch(r"[\w.+-]+", label) or label in BUILT_IN:
                raise UserError(f"variant name {label!r}: use letters, digits, . + - _ only, and not a built-in name "
                                f"({', '.join(BUILT_IN)})")
            out[label] = shlex.split(flags)
        elif name in ("default", "all", "nanogpt") or name in CHANGES:
            out[name] = {"default": [], "all": list(CHANGES.values()), "nanogpt": NANOGPT}.get(name, [CHANGES.get(name)])
        else:
            raise UserError(f"unknown variant {name!r}: choose among alone, without, default, all, nanogpt, "
                            + ", ".join(CHANGES) + ", or give your own as NAME=OPTIONS")
    return out


def corpus_documents(name: str, fortunes_dir: Path) -> tuple[list[str], list[str]]:
    """The corpus as a list of documents (one fortune each; the world's paragraphs), and the
    files it came from."""
    if name == "world":
        text_file = ROOT / "data" / "world" / "pretrain.txt"
        if not text_file.exists():  # generated on first use, as pretrain.py does
            from data.world.prepare import prepare_world
            prepare_world()
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
    if (folder / "test.bin").exists():  # written last: a corpus cut short is prepared again
        return json.loads((folder / "meta.json").read_text())
    import numpy as np
    from data.prepare import write_dataset
    from tokenizer import DOC, Tokenizer, cl100k
    docs, files = corpus_documents(name, fortunes_dir)
    docs = list(dict.fromkeys(docs))  # a document repeated word for word would be in test and train both
    random.Random(0).shuffle(docs)
    n_test = max(1, int(len(docs) * TEST_SHARE))
    test, rest = docs[:n_test], docs[n_test:]
    meta = write_dataset(rest, folder, 8192, 0.05, [name])
    tokenizer = Tokenizer(meta["vocab"])
    ids = np.array([t for d in test for t in [DOC] + tokenizer.from_cl100k_ids(cl100k().encode_ordinary(d))], dtype=np.uint16)
    val = np.fromfile(folder / "val.bin", dtype=np.uint16)
    val_bytes = len(tokenizer.decode_bytes(val[val != DOC].tolist()))  # the text's bytes, as for test
    meta.update(test_tokens=len(ids), test_bytes=sum(len(d.encode()) for d in test), test_documents=n_test,
                val_bytes=val_bytes, files=files)
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


def train_and_score(corpus: str, folder: Path, meta: dict, variant: str, flags: list[str], minutes: float,
                    seed: int, run_dir: Path, extra: list[str]) -> dict:
    """One pretraining run of the variant for the given wall time, and its scores."""
    import numpy as np
    from machine import machine_name
    start = time.perf_counter()
    done = subprocess.run([sys.executable, str(ROOT / "pretrain.py"), f"--dataset={folder}", f"--out_dir={run_dir}",
                           f"--time={minutes * 60:g}s", f"--seed={seed}", "--overwrite", *QUIET, *flags, *extra],
                          capture_output=True, text=True)
    if done.returncode == 2:  # an option pretrain.py refused: its one line says which
        raise UserError(f"variant {variant}: {done.stderr.strip().splitlines()[-1].removeprefix('error: ')}")
    if done.returncode != 0:
        raise SystemExit(f"pretraining {variant} on {corpus} failed:\n{done.stderr[-2000:]}")
    wall = time.perf_counter() - start
    log = [json.loads(line) for line in (run_dir / "log.jsonl").read_text().splitlines()]
    steps = [r for r in log if "loss" in r]
    scores = {split: round(bits_per_byte(run_dir / "ckpt.pt", np.fromfile(folder / f"{split}.bin", dtype=np.uint16),
                                         meta[f"{split}_bytes"]), 5) for split in ("val", "test")}
    return {"corpus": corpus, "variant": variant, "minutes": minutes, "seed": seed, "flags": flags,
            "pretrain_args": extra, "machine": machine_name(),
            "steps": len(steps), "tokens": int(sum(r["tokens_per_s"] * r["seconds"] for r in steps)),
            "train_seconds": round(sum(r["seconds"] for r in steps), 1), "wall_seconds": round(wall, 1),
            "median_step_seconds": statistics.median(r["seconds"] for r in steps),
            "val_bits_per_byte": scores["val"], "test_bits_per_byte": scores["test"]}


def report(record: dict, minutes: float, split: str = "test", only: tuple[str, ...] | None = None) -> str:
    """The table of one wall time: bits per byte on the split per variant (or only these) and
    corpus (mean over seeds, with the spread where there are several), its ratios to today's
    default and to nanoGPT's recipe."""
    rows = [r for r in record["results"] if r["minutes"] == minutes and (only is None or r["variant"] in only)]
    corpora = sorted({r["corpus"] for r in rows}, key=lambda c: ["fortunes", "fortunes-zh", "world"].index(c))
    cells = {}
    for r in rows:
        cells.setdefault((r["variant"], r["corpus"]), []).append(r)
    lines = [f"{'Test' if split == 'test' else 'Validation'} bits per byte after {minutes:g} minutes of pretraining "
             "(lower is better; then the steps taken) on " + ", ".join(sorted({r.get("machine", "?") for r in rows})) + ", "
             f"`python quality.py --minutes={minutes:g}`:", "",
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
                      for base in ("default", "nanogpt") if (base, corpus) in cells and base != variant]
            text += f" ({', '.join(ratios)})" if ratios else ""
            line += f" {text}; {round(statistics.mean(r['steps'] for r in runs)):,} |"
        lines.append(line)
    return "\n".join(lines) + "\n"


def corpora_table(record: dict) -> str:
    lines = ["| corpus | documents (train and validation) | train tokens | validation tokens | validation bytes | "
             "test documents | test tokens | test bytes |",
             "| --- |" + " --- |" * len(SIZES)]
    lines += [f"| {name} | " + " | ".join(f"{sizes[k]:,}" for k in SIZES) + " |" for name, sizes in record["corpora"].items()]
    return "\n".join(lines) + "\n"


def docs_blocks(record: dict) -> dict[Path, str]:
    """What the record puts between the quality markers of README.md and docs/quality.md."""
    every = [corpora_table(record)] + [report(record, minutes, split) for minutes in sorted({r["minutes"] for r in record["results"]})
                                       for split in ("val", "test")]
    return {ROOT / "README.md": report(record, record["readme_minutes"], "test", README_VARIANTS),
            ROOT / "docs" / "quality.md": "\n".join(every)}


def main() -> None:
    config, _, _ = parse_args(OPTIONS, "python quality.py [--corpora=...] [--variants=...] [--minutes=2]", __doc__)
    out_dir, fortunes_dir = Path(config["out_dir"]), Path(config["fortunes_dir"])
    chosen = variants(config["variants"].split(","))
    extra = shlex.split(config["pretrain_args"])
    from pretrain import OPTIONS as PRETRAIN_OPTIONS  # each variant's options checked now, not hours into the runs
    for variant, flags in chosen.items():
        try:
            parse_args(PRETRAIN_OPTIONS, "", "", argv=[*flags, *extra])
        except UserError as e:
            raise UserError(f"variant {variant}: {e}") from None
    corpora = config["corpora"].split(",")
    folders = {}
    for corpus in corpora:  # all prepared first: a missing corpus stops the run before any training
        folders[corpus] = out_dir / "data" / corpus
        meta = prepare_corpus(corpus, folders[corpus], fortunes_dir)
        print(f"{corpus}: {meta['train_tokens']:,} train, {meta['val_tokens']:,} validation, "
              f"{meta['test_tokens']:,} test tokens ({meta['test_documents']:,} documents held out)")
    results_path = out_dir / "results.json"
    record = json.loads(results_path.read_text()) if results_path.exists() else {"results": []}
    record.setdefault("corpora", {}).update({c: {k: v for k, v in json.loads((folders[c] / "meta.json").read_text()).items()
                                                 if k in SIZES} for c in corpora})
    for corpus in corpora:
        meta = json.loads((folders[corpus] / "meta.json").read_text())
        for variant, flags in chosen.items():
            for seed in range(1337, 1337 + config["seeds"]):
                key = (corpus, variant, config["minutes"], seed)
                if not config["rerun"] and any((r["corpus"], r["variant"], r["minutes"], r["seed"]) == key
                                               and (r["flags"], r.get("pretrain_args")) == (flags, extra)
                                               for r in record["results"]):
                    continue  # the same run, already measured
                run_dir = out_dir / "runs" / corpus / variant / f"{config['minutes']:g}m-{seed}"
                result = train_and_score(corpus, folders[corpus], meta, variant, flags, config["minutes"], seed, run_dir, extra)
                print(f"{corpus:<12} {variant:<16} seed {seed}: {result['steps']:,} steps, validation {result['val_bits_per_byte']:.4f}, "
                      f"test {result['test_bits_per_byte']:.4f} bits/byte ({result['wall_seconds']:.0f} s)", flush=True)
                record["results"] = [r for r in record["results"]
                                     if (r["corpus"], r["variant"], r["minutes"], r["seed"]) != key] + [result]
                text = json.dumps(record, indent=1)
                atomic_write({results_path: lambda f: f.write(text.encode())})  # after every run: nothing lost
    markdown = report(record, config["minutes"])
    print("\n" + markdown)
    if config["readme"]:  # the README shows this wall time's table; docs/quality.md every table, both splits
        record["readme_minutes"] = config["minutes"]
        updated = update_docs("quality", docs_blocks(record), RECORD, json.dumps(record, indent=1))
        print(f"updated {', '.join(str(p.relative_to(ROOT)) for p in updated)} and {RECORD.relative_to(ROOT)}"
              if updated else "README.md and docs/quality.md have no quality markers: left as they are")


if __name__ == "__main__":
    run(main)
