"""quality.py: corpora split as claimed, bits per byte as defined, a tiny equal-time comparison."""
import json
import math
import re

import numpy as np
import pytest
import torch

from cli import UserError
from data.prepare import TOKENS, read_tokens

from conftest import run_script

FORTUNES = "\n%\n".join(f"Fortune number {i}: the \x1b[33mbest\x1b[m is yet to come, said person {i}." for i in range(120))
FORTUNES += "\n%\n" + "\n%\n".join(["A fortune told twice."] * 30)  # repeated word for word: kept once
CHINESE = "\n%\n".join(f"第{i}首：床前明月光，疑是地上霜。舉頭望明月，低頭思故鄉。" for i in range(120))


def fortunes_dir(tmp_path):
    folder = tmp_path / "fortunes"
    folder.mkdir()
    (folder / "wisdom").write_text(FORTUNES + "\n%\n")
    (folder / "wisdom.dat").write_bytes(b"\x00\x01binary index")
    (folder / "chinese").write_text(CHINESE + "\n%\n")
    return folder


def test_corpora_are_split_before_anything_runs(tmp_path):
    """One fortune per document, terminal colours stripped, Chinese files only in fortunes-zh;
    the held-out test documents never appear in the training or validation tokens."""
    from quality import corpus_documents, prepare_corpus
    from tokenizer import Tokenizer
    folder = fortunes_dir(tmp_path)
    (english, english_files), (chinese, _) = corpus_documents("fortunes", folder), corpus_documents("fortunes-zh", folder)
    assert len(english) == 150 and len(chinese) == 120 and "\x1b" not in "".join(english)
    assert english_files == [str(folder / "wisdom")] and all("明月" in d for d in chinese)
    meta = prepare_corpus("fortunes", tmp_path / "data", folder)
    assert meta["documents"] + meta["test_documents"] == 121  # 120 fortunes and the repeated one, once
    tokenizer = Tokenizer(meta["vocab"])
    seen = tokenizer.decode(np.concatenate([read_tokens(tmp_path / "data" / f) for f in ("train.bin", "val.bin")]))
    test = tokenizer.decode(read_tokens(tmp_path / "data" / "test.bin"))
    held_out = [d for d in set(english) if d in test]
    assert len(held_out) == meta["test_documents"] == 6 and not any(d in seen for d in held_out)
    assert meta["test_bytes"] == sum(len(d.encode()) for d in held_out)
    val = tokenizer.decode(read_tokens(tmp_path / "data" / "val.bin"))
    assert meta["val_bytes"] == len(val.replace("<|doc|>", "").encode())  # the text's bytes, no separators


def test_variant_groups_and_names():
    """Every built-in variant is GPT-2's recipe written out (so that it stays put when pretrain.py's
    defaults move) and its changes; pretrain.py's default is the speedrun recipe at twice its
    length; your own variant is pretrain.py's defaults and its options."""
    from cli import parse_args
    from pretrain import OPTIONS
    from quality import CHANGES, GPT2, KEPT, SPEEDRUN, variants
    alone, without = variants(["alone"]), variants(["without", "nanogpt", "all", "default"])
    assert list(alone) == ["gpt2", *CHANGES] and alone["rope"] == [*GPT2, "--rope"] and without["default"] == []
    assert without["speedrun-rope"] == [*SPEEDRUN, "--rope=false"] and without["speedrun-muon"] == [*SPEEDRUN, "--muon=false"]
    assert {name.split("-")[1] for name in without if "-" in name} == set(KEPT) == set(CHANGES) - {"logit_cap", "untied"}
    assert without["speedrun+logit_cap"] == [*SPEEDRUN, "--logit_cap=30"]  # a change the recipe left: added back
    parsed = {name: parse_args(OPTIONS, "", "", argv=flags)[0] for name, flags in {**alone, **without}.items()}
    gpt2 = {"n_layer": 4, "n_embd": 256, "batch_size": 16, "max_iters": 2000, "learning_rate": 2e-3, "rope": False,
             "muon": False, "logit_cap": 0.0}
    assert {k: parsed["gpt2"][k] for k in gpt2} == gpt2 and parsed["speedrun"] == {**parsed["default"], "max_iters": 1200}
    assert (parsed["nanogpt"]["n_embd"], parsed["nanogpt"]["block_size"], parsed["nanogpt"]["rope"]) == (128, 64, False)
    assert parsed["all"]["muon"] and parsed["all"]["batch_size"] == 8 and parsed["all"]["logit_cap"] == 30
    speedrun = parsed["speedrun"]
    assert speedrun["rope"] and not speedrun["untied"] and speedrun["muon"] and (speedrun["batch_size"], speedrun["max_iters"]) == (8, 1200)
    assert parsed["speedrun-batch8"]["batch_size"] == 16 and not parsed["speedrun-rope"]["rope"] and parsed["speedrun-rope"]["qk_norm"]
    assert variants(["speedrun-muon", "speedrun-batch8"]) == {n: without[n] for n in ("speedrun-muon", "speedrun-batch8")}
    assert variants(["fast=--muon --muon_lr_scale=3"]) == {"fast": ["--muon", "--muon_lr_scale=3"]}
    for bad in ("default=--rope", "gpt2=--rope", "speedrun-rope=--rope", "a/b=--rope", "=--rope"):
        with pytest.raises(UserError):
            variants([bad])


def test_bits_per_byte_is_the_summed_loss_over_the_bytes(tmp_path):
    from checkpoint import save_checkpoint
    from model import GPT, GPTConfig
    from quality import bits_per_byte
    torch.manual_seed(0)
    model = GPT(GPTConfig(block_size=8, vocab_size=64, n_layer=1, n_head=2, n_embd=16)).eval()
    save_checkpoint({"model": model.state_dict(), "model_config": model.config.__dict__, "vocab": list(range(1000, 1060))},
                    tmp_path / "ckpt.pt")
    tokens = np.random.default_rng(0).integers(0, 60, 21).astype(TOKENS)
    ids = torch.from_numpy(tokens.astype(np.int64))
    nats = 0.0
    with torch.no_grad():  # windows of 8 predictions: 0..7 predict 1..8, 8..15 predict 9..16, 16..19 predict 17..20
        for s, e in ((0, 8), (8, 16), (16, 20)):
            for t in range(s, e):  # each next token from the window's tokens so far, by a plain forward
                nats -= torch.log_softmax(model(ids[None, s:t + 1])[0][0], -1)[ids[t + 1]].item()
    assert abs(bits_per_byte(tmp_path / "ckpt.pt", tokens, 100) - nats / np.log(2) / 100) < 1e-4


TINY = "--n_layer=1 --n_head=2 --n_embd=32 --block_size=32 --batch_size=4 --dtype=float32"
TINY_RUNS = [f"--pretrain_args={TINY}", "--probe_rounds=1"]  # one timing pair a variant: the rounds are tested apart


def test_a_tiny_comparison_buys_each_variant_the_steps_of_its_budget(tmp_path):
    """Each variant is timed alone, then given minutes * 60 / its seconds per step; two runs at
    once (--jobs=2) with a core each; the curve's minutes are its steps at the timed speed."""
    folder = fortunes_dir(tmp_path)
    result = run_script("quality.py", "--corpora=fortunes", "--variants=gpt2,rope", "--minutes=0.02", "--jobs=2",
                        f"--fortunes_dir={folder}", f"--out_dir={tmp_path / 'q'}", *TINY_RUNS,
                        check=True, timeout=200)
    record = json.loads((tmp_path / "q" / "results.json").read_text())
    meta = json.loads((tmp_path / "q" / "data" / "fortunes" / "meta.json").read_text())
    tokens_per_byte = meta["val_tokens"] / meta["val_bytes"]
    assert sorted(r["variant"] for r in record["results"]) == ["gpt2", "rope"]
    again = run_script("quality.py", "--corpora=fortunes", "--variants=gpt2,rope", "--minutes=0.02", f"--fortunes_dir={folder}",
                       f"--out_dir={tmp_path / 'q'}", f"--pretrain_args={TINY} --eval_iters=3", check=True)
    assert "per step" not in again.stdout and "| rope |" in again.stdout  # the same runs (validated otherwise): kept
    assert len({r["machine"] for r in record["results"]}) == 1  # measured once, before the probes
    for r in record["results"]:
        assert r["steps"] == round(1.2 / r["step_seconds"]) and 0 < r["test_bits_per_byte"] < 8
        peak = re.fullmatch(r".+ \((float32|bfloat16) matmul peak ([\d,]+) GFLOP/s\)", r["machine"])
        assert peak and int(peak[2].replace(",", "")) > 0 and peak[2] in result.stdout  # the table names it
        assert 6 <= len(r["curve"]) <= 10 and r["curve"][-1][0] == pytest.approx(1.2 / 60, abs=2e-3)
        log = [json.loads(line) for line in (tmp_path / "q" / "runs" / "fortunes" / r["variant"] / "0.02m-1337" / "log.jsonl").open()]
        assert sum("loss" in row for row in log) == r["steps"]
        validations = [row for row in log if "val_loss" in row]  # pretrain.py's estimates, in bits per byte at the timed minutes
        assert r["curve"] == [[pytest.approx(row["step"] * r["step_seconds"] / 60, abs=1e-3),
                               pytest.approx(row["val_loss"] * tokens_per_byte / math.log(2), abs=1e-3)] for row in validations]
    assert "| rope |" in result.stdout and "% of gpt2)" in result.stdout
    bad = run_script("quality.py", "--corpora=fortunes", "--variants=x=--n_layre=2", f"--fortunes_dir={folder}",
                     f"--out_dir={tmp_path / 'q'}")
    assert bad.returncode == 2 and bad.stderr.count("\n") == 1 and "variant x" in bad.stderr and "n_layer" in bad.stderr
    # a run from a machine that computes in the other precision is not reused: rope runs again, gpt2 does not
    other = {"float32": "bfloat16", "bfloat16": "float32"}
    elsewhere = [{**r, "machine": re.sub(r"\((\w+) matmul", lambda m: f"({other[m[1]]} matmul", r["machine"])}
                 if r["variant"] == "rope" else r for r in record["results"]]
    (tmp_path / "q" / "results.json").write_text(json.dumps({**record, "results": elsewhere}))
    redone = run_script("quality.py", "--corpora=fortunes", "--variants=gpt2,rope", "--minutes=0.02", f"--fortunes_dir={folder}",
                        f"--out_dir={tmp_path / 'q'}", *TINY_RUNS, check=True, timeout=200)
    assert [line.split()[1] for line in redone.stdout.splitlines() if line.endswith(" s per step")] == ["rope"]
    assert "fortunes: new runs timed against gpt2, whose recorded runs took" in redone.stdout  # on the record's clock
    before = {r["variant"]: r for r in elsewhere}
    after = {r["variant"]: r for r in json.loads((tmp_path / "q" / "results.json").read_text())["results"]}
    assert after["gpt2"] == before["gpt2"] and after["rope"]["machine"] != before["rope"]["machine"]
    # the corpus's text changes (the world's does with its options): prepared again, earlier results set aside
    with (folder / "wisdom").open("a") as f:
        f.write("A fortune added later.\n%\n")
    changed = run_script("quality.py", "--corpora=fortunes", "--variants=gpt2", "--minutes=0.02", f"--fortunes_dir={folder}",
                         f"--out_dir={tmp_path / 'q'}", *TINY_RUNS, check=True, timeout=200)
    assert "fortunes: its text changed since the record's 2 results on it" in changed.stdout
    assert [line.split()[1] for line in changed.stdout.splitlines() if line.endswith(" s per step")] == ["gpt2"]
    final = json.loads((tmp_path / "q" / "results.json").read_text())
    assert [r["variant"] for r in final["results"]] == ["gpt2"] and final["results"][0] != after["gpt2"]
    assert sorted(r["variant"] for r in final["set_aside"]) == ["gpt2", "rope"]
    assert final["corpora"]["fortunes"]["documents"] + final["corpora"]["fortunes"]["test_documents"] == 122
    assert final["set_aside"][0]["corpus_then"]["source"] != final["corpora"]["fortunes"]["source"]


def test_at_full_length_each_variant_runs_its_own_steps_and_draws_its_curve(tmp_path):
    from quality import curve_svg
    folder = fortunes_dir(tmp_path)
    result = run_script("quality.py", "--corpora=fortunes", "--variants=a=--max_iters=12,b=--max_iters=20 --rope",
                        "--minutes=0", "--seeds=2", f"--fortunes_dir={folder}", f"--out_dir={tmp_path / 'q'}",
                        *TINY_RUNS, check=True, timeout=200)
    record = json.loads((tmp_path / "q" / "results.json").read_text())
    assert sorted((r["variant"], r["seed"], r["options"]["seed"]) for r in record["results"]) == [
        ("a", 1337, 1337), ("a", 1338, 1338), ("b", 1337, 1337), ("b", 1338, 1338)]  # each run's record its own seed
    runs = {r["variant"]: r for r in record["results"]}
    assert (runs["a"]["steps"], runs["b"]["steps"]) == (12, 20)
    assert all(r["train_minutes"] == pytest.approx(r["steps"] * r["step_seconds"] / 60, abs=0.01) for r in runs.values())
    assert " min |" in result.stdout and runs["b"]["curve"][-1][0] == pytest.approx(runs["b"]["train_minutes"], abs=0.01)
    for r in record["results"]:  # drawn as GPT-2's recipe and the speedrun recipe
        r["variant"] = {"a": "gpt2", "b": "speedrun"}[r["variant"]]
    svg = curve_svg(record)
    lines = [line.split('points="')[1].split('"')[0].split() for line in svg.splitlines() if 'stroke-width="2"' in line]
    assert [len(points) for points in lines] == [len(runs["a"]["curve"]), len(runs["b"]["curve"])]
    assert svg.count("<svg") == 1 and ">fortunes<" in svg
    # a third seed later (another host, say): the table keeps its clock, a's new run timed as a's recorded ones
    more = run_script("quality.py", "--corpora=fortunes", "--variants=a=--max_iters=12,b=--max_iters=20 --rope", "--minutes=0",
                      "--seeds=3", f"--fortunes_dir={folder}", f"--out_dir={tmp_path / 'q'}", *TINY_RUNS,
                      check=True, timeout=200)
    assert "fortunes: new runs timed against a, whose recorded runs took" in more.stdout
    third = {r["variant"]: r for r in json.loads((tmp_path / "q" / "results.json").read_text())["results"] if r["seed"] == 1339}
    assert third["a"]["step_seconds"] == pytest.approx(runs["a"]["step_seconds"]) and third["b"]["steps"] == 20
    # b's runs timed on a host a hundred times slower: --retime trains nothing and puts them on a's clock
    path = tmp_path / "q" / "results.json"
    record = json.loads(path.read_text())
    for r in record["results"]:
        if r["variant"] == "b":
            r["step_seconds"], r["curve"] = 100.0, [[m * 100.0 / r["step_seconds"], bpb] for m, bpb in r["curve"]]
    path.write_text(json.dumps(record))
    again = run_script("quality.py", "--corpora=fortunes", "--variants=a=--max_iters=12,b=--max_iters=20 --rope", "--minutes=0",
                       "--retime", f"--fortunes_dir={folder}", f"--out_dir={tmp_path / 'q'}", *TINY_RUNS,
                       check=True, timeout=200)
    assert "fortunes: 3 run(s) of b retimed to" in again.stdout
    after = json.loads(path.read_text())["results"]
    assert [(r["variant"], r["seed"], r["val_bits_per_byte"]) for r in after] == [
        (r["variant"], r["seed"], r["val_bits_per_byte"]) for r in record["results"]]  # nothing trained
    b = [r for r in after if r["variant"] == "b"]
    assert len({r["step_seconds"] for r in b}) == 1 and b[0]["step_seconds"] < 3 * max(r["step_seconds"] for r in runs.values())
    assert {r["clock"] for r in b} == {runs["a"]["machine"]} and all(r["timed_on"].split(" (")[0] == r["machine"].split(" (")[0] for r in b)
    assert all(r["train_minutes"] == pytest.approx(20 * r["step_seconds"] / 60, abs=0.01)
               and r["curve"][-1][0] == pytest.approx(r["train_minutes"], abs=0.01) for r in b)
    assert [r for r in after if r["variant"] == "a"] == [r for r in record["results"] if r["variant"] == "a"]
    refused = run_script("quality.py", "--corpora=fortunes", "--variants=b=--max_iters=20 --rope", "--minutes=0", "--retime",
                         f"--fortunes_dir={folder}", f"--out_dir={tmp_path / 'q'}", *TINY_RUNS, timeout=200)
    assert refused.returncode == 2 and refused.stderr.strip().splitlines()[-1] == (
        "error: --retime: fortunes needs full-length runs of b (the clock) and of another variant in the record, with "
        "these --pretrain_args; run them first with --minutes=0")


def test_the_quality_tables_show_the_recorded_results():
    """README.md's quality tables, docs/quality.md's and the curve are what quality.py renders from its record."""
    from cli import readme_markers
    from quality import CURVE, RECORD, curve_svg, docs_blocks
    begin, end = readme_markers("quality")
    record = json.loads(RECORD.read_text(encoding="utf-8"))
    for doc, block in docs_blocks(record).items():
        assert doc.read_text(encoding="utf-8").split(begin, 1)[1].split(end, 1)[0] == "\n" + block
    assert CURVE.read_text(encoding="utf-8") == curve_svg(record)


def test_the_readme_shows_the_longest_short_budget_where_both_recipes_ran_three_seeds():
    """A study of a few variants (no gpt2 beside them) or of one seed stays in docs/quality.md."""
    from quality import ROOT, docs_blocks
    row = {"corpus": "world", "steps": 10, "train_minutes": 1.0, "machine": "CPU", "test_bits_per_byte": 1.5, "pretrain_args": [],
           "val_bits_per_byte": 1.5}
    def runs(variant, minutes, seeds):
        return [{**row, "variant": variant, "minutes": minutes, "seed": 1337 + i} for i in range(seeds)]
    record = {"corpora": {}, "results": [*runs("gpt2", 1.5, 1), *runs("speedrun", 1.5, 1), *runs("speedrun", 5, 3),
                                         *runs("speedrun-muon", 5, 3), *runs("gpt2", 2, 3), *runs("speedrun", 2, 3)]}
    readme = docs_blocks(record)[ROOT / "README.md"]
    assert "after 2 minutes of pretraining" in readme and "after 5 minutes" not in readme and "1.5 minutes" not in readme
    assert docs_blocks({**record, "results": record["results"][:-3]})[ROOT / "README.md"] == ""


def test_rows_from_two_machines_say_which_corpus_ran_where():
    from quality import report
    row = {"variant": "gpt2", "minutes": 0, "seed": 1337, "steps": 10, "train_minutes": 1.0, "test_bits_per_byte": 1.5}
    record = {"results": [{**row, "corpus": "world", "machine": "CPU A"}, {**row, "corpus": "fortunes", "machine": "CPU B"}]}
    assert " on CPU A (world), CPU B (fortunes), `python quality.py --minutes=0`:" in report(record, 0)
    one = {"results": [{**row, "corpus": "world", "machine": "CPU A"}, {**row, "corpus": "fortunes", "machine": "CPU A"}]}
    assert " on CPU A, `python quality.py" in report(one, 0)  # one machine: named once
    peaks = {"results": [{**row, "corpus": c, "machine": f"CPU A (bfloat16 matmul peak {p} GFLOP/s)"}
                         for c, p in (("world", "870"), ("fortunes", "960"), ("fortunes-zh", "920"))]}
    assert " on CPU A (bfloat16 matmul peak 870 to 960 GFLOP/s as measured at each run), `python" in report(peaks, 0)
    other = {"results": peaks["results"] + [{**row, "corpus": "world", "machine": "CPU B (bfloat16 matmul peak 2,000 GFLOP/s)"}]}
    assert (" on CPU A (bfloat16 matmul peak 870 to 960 GFLOP/s as measured at each run) (fortunes, fortunes-zh, world), "
            "CPU B (bfloat16 matmul peak 2,000 GFLOP/s) (world), `python") in report(other, 0)  # each machine once
    halved = {"results": [{**row, "corpus": "fortunes", "machine": "CPU", "minutes": 4.195},
                          {**row, "corpus": "world", "machine": "CPU", "minutes": 4.195, "gpt2_step_seconds": 0.2}]}
    assert "after 4.2 minutes" in report(halved, 4.195) and (  # each corpus's runs named by the command that made them
        "`python quality.py --minutes=4.2` and `python quality.py --half_time` (world):") in report(halved, 4.195)


def test_the_full_length_table_says_when_speedrun_reaches_gpt2s_final_validation():
    from quality import report
    row = {"minutes": 0, "seed": 1337, "steps": 10, "step_seconds": 60.0, "train_minutes": 10.0, "test_bits_per_byte": 1.5,
           "machine": "CPU", "corpus": "world"}
    gpt2 = {**row, "variant": "gpt2", "curve": [[2.0, 3.0], [4.0, 2.0], [10.0, 1.6]]}
    speedrun = {**row, "variant": "speedrun", "curve": [[1.0, 2.5], [3.0, 1.7], [4.0, 1.55], [5.0, 1.4]]}
    assert report({"results": [gpt2, speedrun]}, 0).endswith(
        "first reaches gpt2's final value: world: after 4.0 of gpt2's 10.0 min (40%).\n")
    slow = {**speedrun, "curve": [[1.0, 2.5], [5.0, 1.7]]}
    assert report({"results": [gpt2, slow]}, 0).endswith("world: not within its run.\n")
    assert report({"results": [gpt2, speedrun, {**slow, "seed": 1338}]}, 0).endswith("(40%).\n")  # the first seed's curve
    # seeds timed in another invocation: both clocks are the table's, each variant's mean seconds a step
    slower = {"seed": 1338, "step_seconds": 90.0, "train_minutes": 15.0}
    assert report({"results": [gpt2, {**gpt2, **slower}, speedrun, {**speedrun, **slower}]}, 0).endswith(
        "world: after 5.0 of gpt2's 12.5 min (40%).\n")


def test_half_time_times_gpt2_beside_the_variant_and_gives_it_half_of_gpt2s_steps_in_its_own(tmp_path):
    """--half_time: gpt2's full-length runs in the record set the budget (half their steps and minutes);
    gpt2 and the variant are timed one after the other now, and the variant runs half of gpt2's
    steps times gpt2's seconds per step over its own, filed at half of gpt2's recorded minutes."""
    folder = fortunes_dir(tmp_path)
    args = ["--corpora=fortunes", f"--fortunes_dir={folder}", f"--out_dir={tmp_path / 'q'}", *TINY_RUNS]
    missing = run_script("quality.py", "--variants=speedrun", "--half_time", *args)
    assert missing.returncode == 2 and missing.stderr.count("\n") == 1 and "--variants=gpt2 --minutes=0" in missing.stderr
    both = run_script("quality.py", "--variants=speedrun", "--half_time", "--minutes=3", *args)
    assert both.returncode == 2 and both.stderr.count("\n") == 1 and "leave --minutes out" in both.stderr
    record = json.loads((tmp_path / "q" / "results.json").read_text())  # the corpus prepared, nothing run
    gpt2 = {"corpus": "fortunes", "variant": "gpt2", "minutes": 0, "steps": 40, "train_minutes": 0.3, "seed": 1337,
            "machine": "CPU", "val_bits_per_byte": 9.0, "options": {}, "pretrain_args": TINY.split()}
    other = {**gpt2, "seed": 1339, "steps": 4000, "train_minutes": 30.0, "pretrain_args": []}  # not its yardstick
    (tmp_path / "q" / "results.json").write_text(
        json.dumps({**record, "results": [gpt2, {**gpt2, "seed": 1338, "steps": 44}, other]}))
    result = run_script("quality.py", "--variants=speedrun", "--half_time", *args, check=True, timeout=200)
    probes = [line.split() for line in result.stdout.splitlines() if line.endswith(" s per step")]
    assert [probe[1] for probe in probes] == ["gpt2", "speedrun"]  # gpt2 timed first, beside it
    runs = [r for r in json.loads((tmp_path / "q" / "results.json").read_text())["results"] if r["variant"] == "speedrun"]
    assert len(runs) == 1 and runs[0]["minutes"] == 0.3 / 2
    assert [runs[0]["gpt2_step_seconds"], runs[0]["step_seconds"]] == [pytest.approx(float(p[2]), abs=6e-4) for p in probes]
    assert runs[0]["steps"] == max(1, round(21 * runs[0]["gpt2_step_seconds"] / runs[0]["step_seconds"]))
    assert "`python quality.py --half_time` (fortunes):" in result.stdout
    again = run_script("quality.py", "--variants=speedrun", "--half_time", "--seeds=2", *args, check=True, timeout=200)
    assert " s per step" not in again.stdout  # a continued line keeps the recorded runs' clock: no new probe
    first, second = sorted((r for r in json.loads((tmp_path / "q" / "results.json").read_text())["results"]
                            if r["variant"] == "speedrun"), key=lambda r: r["seed"])
    assert second["seed"] == 1338 and [second[k] for k in ("steps", "step_seconds", "gpt2_step_seconds")] == \
        [first[k] for k in ("steps", "step_seconds", "gpt2_step_seconds")]


def test_speedrun_given_half_of_gpt2s_time_is_set_against_where_gpt2_ends():
    """The largest speedrun budget within half of gpt2's full-length minutes, mean and spread over
    its seeds, against gpt2's final validation; a budget over half is not taken."""
    from quality import half_time
    row = {"corpus": "fortunes", "steps": 10, "machine": "CPU", "seed": 1337, "pretrain_args": []}
    gpt2 = {**row, "variant": "gpt2", "minutes": 0, "train_minutes": 8.4, "val_bits_per_byte": 2.2}
    runs = [{**row, "variant": "speedrun", "minutes": m, "seed": s, "train_minutes": m, "val_bits_per_byte": v}
            for m, s, v in ((4.2, 1337, 2.1), (4.2, 1338, 2.3), (2.0, 1337, 2.5), (5.0, 1337, 1.0))]
    assert half_time({"results": [gpt2, *runs]}) == (
        "Given at most half of gpt2's time, its schedule fitted to it (`python quality.py --variants=speedrun --seeds=3 "
        "--half_time`, or `--minutes=M`), speedrun's validation bits per byte against where gpt2 ends: fortunes, 4.2 of gpt2's 8.4 min: "
        "2.200 ± 0.141 (2 seeds) against 2.200 (1 seed).\n")
    assert half_time({"results": [gpt2, runs[3]]}) == "" and half_time({"results": runs}) == ""
    other = [{**r, "pretrain_args": ["--n_layer=2"]} for r in runs]  # another --pretrain_args: not against this gpt2
    assert half_time({"results": [gpt2, *other]}) == ""


def test_the_ablation_gives_each_changes_gain_alone_and_within_speedrun():
    """Gains in % of the base's validation bits per byte, positive where the change pays, the
    recipes' seeds averaged, their spread beside; a corpus with one recipe gets its column, a budget
    with no change run no table."""
    from quality import ablation
    row = {"corpus": "world", "minutes": 1.5, "seed": 1337}
    results = [{**row, "variant": v, "val_bits_per_byte": b, "seed": s} for v, b, s in (
        ("gpt2", 2.0, 1337), ("gpt2", 2.2, 1338), ("rope", 1.89, 1337),  # rope alone: 2.1 -> 1.89, 10% saved
        ("speedrun", 1.0, 1337), ("speedrun-rope", 1.05, 1337), ("speedrun-muon", 0.98, 1337),
        ("logit_cap", 2.2, 1337), ("speedrun+logit_cap", 0.99, 1337))]
    table = ablation({"results": results + [{**results[0], "minutes": 4.0}]}, 1.5)
    assert "| change | world: alone / in speedrun |" in table
    assert "| rope | +10.0% / +5.0% |" in table  # removing rope costs 5%
    assert "| muon | – / -2.0% |" in table  # muon alone not run; removing it gains 2%
    assert "| logit_cap (added) | -4.8% / +1.0% |" in table  # not in speedrun: adding it gains 1%, alone it costs
    assert "| seeds' spread (how many) | ±6.7% (2) / one seed |" in table
    assert "qk_norm" not in table and ablation({"results": results}, 4.0) == ""
    zh = [{**r, "corpus": "fortunes-zh"} for r in results[:3] + results[5:6]]  # no speedrun: only the alone column
    table = ablation({"results": results + zh}, 1.5)
    assert "| change | fortunes-zh: alone / in speedrun | world: alone / in speedrun |" in table
    assert "| rope | +10.0% / – | +10.0% / +5.0% |" in table and "| muon | – / – | – / -2.0% |" in table
    assert "| seeds' spread (how many) | ±6.7% (2) / – | ±6.7% (2) / one seed |" in table
    assert "--minutes=1.5 --variants" in table
    half = [{**r, "minutes": 3.5, "gpt2_step_seconds": 0.2} for r in results[3:]]  # --half_time: speedrun's only
    table = ablation({"results": half}, 3.5)
    assert "| muon | – / -2.0% |" in table and "| seeds' spread (how many) | – / one seed |" in table
    assert "`python quality.py --half_time --variants=alone,without`" in table


def test_results_on_a_corpus_whose_text_changed_are_set_aside_and_come_back_with_it():
    from quality import follow_corpus
    a, b = {"documents": 10, "test_tokens": 50, "source": "a"}, {"documents": 11, "test_tokens": 52, "source": "b"}
    first = [{"corpus": "fortunes", "variant": v, "minutes": 1, "seed": 1337} for v in ("gpt2", "rope")]
    record = {"corpora": {"fortunes": a}, "results": [*first, {"corpus": "world", "variant": "gpt2"}]}
    assert follow_corpus(record, "fortunes", a) == [] and len(record["results"]) == 3  # the same text: nothing moves
    said = follow_corpus(record, "fortunes", b)
    assert said == ['fortunes: its text changed since the record\'s 2 results on it: they are set aside '
                    '(under "set_aside" in the record) and not reused or shown']
    assert record["results"] == [{"corpus": "world", "variant": "gpt2"}] and record["corpora"]["fortunes"] == b
    assert record["set_aside"] == [{**r, "corpus_then": a} for r in first]
    record["results"].append({"corpus": "fortunes", "variant": "gpt2", "minutes": 1, "seed": 1337, "new": True})
    assert follow_corpus(record, "fortunes", a)[-1] == "fortunes: its text is again the one 2 set-aside results measured: they are back"
    assert record["results"][1:] == first and record["set_aside"][0]["new"] and record["set_aside"][0]["corpus_then"] == b
    old = {"corpora": {"fortunes": {"documents": 10, "test_tokens": 50}}, "results": list(first)}  # from before "source"
    assert follow_corpus(old, "fortunes", a) == [] and old["results"] == first  # the same sizes: kept
    follow_corpus(old, "fortunes", {**a, "documents": 12})
    assert old["results"] == [] and len(old["set_aside"]) == 2


def test_results_follow_the_built_in_variant_that_runs_their_options_now(monkeypatch):
    """The recipe's cap moves from 15 to 30: speedrun's and logit_cap's runs with the cap of 15 are set
    aside, an own variant that ran the cap of 30 is filed as speedrun (unless speedrun has that run),
    gpt2's stay; built-ins alike under --max_iters keep their own name; moved back, the set-aside runs
    return and the cap of 30's leave (their own name is not remembered)."""
    import quality
    from cli import parse_args
    from pretrain import OPTIONS
    def result(variant, flags, seed=1337, pretrain_args=("--n_layer=1",), **more):
        options = parse_args(OPTIONS, "", "", argv=[*flags, *pretrain_args])[0]
        return {"corpus": "world", "variant": variant, "minutes": 0, "seed": seed, "pretrain_args": list(pretrain_args),
                "options": options, **more}
    def recipe(cap):  # quality.py's recipe with the cap appended at this value, untied, as in steps 24 to 28
        changes = {**quality.CHANGES, "logit_cap": (f"--logit_cap={cap}", "--logit_cap=0")}
        monkeypatch.setattr(quality, "CHANGES", changes)
        monkeypatch.setattr(quality, "SPEEDRUN", [*quality.GPT2, *(changes[c][0] for c in quality.KEPT), "--untied",
                                                  f"--logit_cap={cap}", "--max_iters=1200"])
        return quality.SPEEDRUN
    assert quality.built_in_name(result("mine", quality.SPEEDRUN, pretrain_args=["--max_iters=9"])["options"],
                                 ["--max_iters=9"], OPTIONS, {}) == "default"  # pretrain.py's default, its steps aside
    cap15, cap30 = recipe(15), recipe(30)
    recipe(15)
    record = {"corpora": {"world": {"documents": 3}}, "results": [
        result("gpt2", quality.GPT2), result("speedrun", cap15, 1337), result("speedrun", cap15, 1338),
        result("logit_cap", [*quality.GPT2, "--logit_cap=15"]), result("cap30", cap30, 1337),
        result("mine", cap30, 1338, old=True), result("again", cap30, 1337), result("wide", ["--n_embd=384"]),
        {**result("logit_cap", [], 1340), "options": {}}]}  # no options recorded (a test's record): left as filed
    record["results"].append({**record["results"][1], "options": {
        k: v for k, v in record["results"][1]["options"].items() if k != "muon_lr_scale"}, "seed": 1339})  # older
    assert quality.follow_variants(record, OPTIONS) == [] and len(record["results"]) == 10  # as filed: nothing moves
    recipe(30)  # pretrain.py's default then
    alike = result("all", quality.variants(["all"])["all"], pretrain_args=["--max_iters=9"])["options"]  # as speedrun's
    assert [quality.built_in_name(alike, ["--max_iters=9"], OPTIONS, {}, first) for first in ("all", "speedrun", "")] == [
        "all", "speedrun", "all"]  # not pretrain.py's default now: it has no cap (step 29) and is tied (31)
    assert quality.built_in_name(result("mine", cap30)["options"], ["--n_layer=1"], OPTIONS, {}) == "speedrun"
    assert quality.follow_variants(record, OPTIONS) == [
        "3 runs of speedrun: what no built-in variant runs now (the recipe moved), set aside",
        "1 run of logit_cap: what no built-in variant runs now (the recipe moved), set aside",
        "1 run of cap30: what speedrun runs now, filed under it", "1 run of mine: what speedrun runs now, filed under it"]
    assert [(r["variant"], r["seed"]) for r in record["results"]] == [
        ("gpt2", 1337), ("speedrun", 1337), ("speedrun", 1338), ("again", 1337), ("wide", 1337), ("logit_cap", 1340)]
    assert record["results"][2]["old"] and {r["seed"] for r in record["set_aside"]} == {1337, 1338, 1339}
    assert all(r["variant_then"] == r["variant"] and r["corpus_then"] == {"documents": 3} for r in record["set_aside"])
    assert quality.follow_corpus(record, "world", {"documents": 3}) == []  # the text's own set-aside rule leaves them
    recipe(15)
    assert quality.follow_variants(record, OPTIONS) == [
        "2 runs of speedrun: what no built-in variant runs now (the recipe moved), set aside",
        "3 set-aside runs: what speedrun runs again, back", "1 set-aside run: what logit_cap runs again, back"]
    assert sorted(r["options"]["logit_cap"] for r in record["results"] if r["variant"] == "speedrun") == [15] * 3
    assert not any("variant_then" in r or "corpus_then" in r for r in record["results"])
    record["corpora"]["world"] = {"documents": 4}  # and set-aside runs of an earlier text stay aside
    recipe(30)
    assert quality.follow_variants(record, OPTIONS) == [
        "1 run of again: what speedrun runs now, filed under it",
        "3 runs of speedrun: what no built-in variant runs now (the recipe moved), set aside",
        "1 run of logit_cap: what no built-in variant runs now (the recipe moved), set aside"]
    assert quality.follow_variants(record, OPTIONS) == [] and len(record["set_aside"]) == 6


def test_variants_are_timed_beside_the_first_so_that_a_drifting_host_gives_equal_work_equal_steps(capsys):
    """The host slows by a tenth from one pair of probes to the next (two timed one after the other
    see the same speed): variants of equal work still get equal seconds per step, and one of twice
    the work twice, since each is set against the corpus's first variant timed just before it."""
    from quality import time_variants
    work = {"speedrun": 1.0, "speedrun-zero_init": 1.0, "speedrun-batch8": 2.0}
    calls = []
    def time_one(corpus, variant, flags):
        calls.append(variant)
        return 0.2 * work[variant] * 1.1 ** (len(calls) // 2)  # slower at every pair
    probes = [("world", name, []) for name in work] + [("fortunes", "speedrun-batch8", [])]
    seconds = time_variants(probes, time_one)
    assert calls == ["speedrun", *["speedrun", "speedrun-zero_init"] * 3, *["speedrun", "speedrun-batch8"] * 3,
                     "speedrun-batch8"]
    assert seconds["world", "speedrun-zero_init"] == pytest.approx(seconds["world", "speedrun"])
    assert seconds["world", "speedrun-batch8"] == pytest.approx(2 * seconds["world", "speedrun"])
    assert seconds["fortunes", "speedrun-batch8"] == pytest.approx(0.2 * 2 * 1.1 ** 7)  # a corpus's first: timed once
    assert capsys.readouterr().out.count(" s per step") == 4
    calls.clear()
    time_variants(probes[:2], time_one, rounds=1)  # --probe_rounds=1: one pair a variant
    assert calls == ["speedrun", "speedrun", "speedrun-zero_init"]


def test_one_probe_off_by_a_third_does_not_move_a_variants_steps():
    """Of a variant's three pairs of probes, the first catches the host busy while the variant runs:
    the median ratio is right, where that pair alone would have given a third more (and the mean a
    tenth, the fastest pair 3% less)."""
    from quality import time_variants
    variant_times = iter([0.40, 0.29, 0.30])
    def time_one(corpus, variant, flags):
        return 0.30 if variant == "speedrun" else next(variant_times)
    seconds = time_variants([("world", "speedrun", []), ("world", "speedrun-zero_init", [])], time_one)
    assert seconds["world", "speedrun-zero_init"] == pytest.approx(0.30)


def test_new_runs_of_a_table_continued_later_get_the_steps_of_the_recorded_runs_moment():
    """speedrun's runs were recorded at 0.25 s a step; the host is twice as fast now: a variant of
    equal work run now gets the recorded runs' 0.25 (as many steps in its minutes), and speedrun's
    own new seeds are timed as recorded, with no new probe of them."""
    from quality import time_variants
    calls = []
    def time_one(corpus, variant, flags):
        calls.append(variant)
        return 0.125
    seconds = time_variants([("world", "speedrun-zero_init", []), ("world", "speedrun", [])], time_one,
                            anchors={"world": [("speedrun", ["--muon"], 0.25)]})
    assert calls == ["speedrun", "speedrun-zero_init"] * 3
    assert seconds == {("world", "speedrun"): 0.25, ("world", "speedrun-zero_init"): 0.25}
