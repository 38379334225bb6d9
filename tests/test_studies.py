"""studies.py: each study's data (what it claims to hold), its scores, compute and table, on tiny inputs."""
import json

import pytest

from data.prepare import read_tokens, write_dataset
from data.world.prepare import read_jsonl, write_jsonl
from model import GPT, GPTConfig
from studies import (EVAL_FACTS, FACT_KINDS, STUDIES, TASKS, crosslingual_runs, routes_runs, datasize_runs, datasize_table, language, nested_subsets,
                     finetuning_flops, pretraining_flops, scores, study_table)

WAYS = [("full", "random", ["--init_from=scratch"]), ("full", "pretrained", []), ("LoRA", "pretrained", ["--lora"])]


def turns(*questions):
    return {"messages": [m for q in questions for m in ({"role": "user", "content": q}, {"role": "assistant", "content": "a"})]}


def tiny_world(folder, examples=1500, facts=400):
    """sft.jsonl: a third Chinese, a third English, a third switching language; held-out questions
    of every kind in both languages; pretraining text in both."""
    folder.mkdir()
    write_jsonl(folder / "sft.jsonl", [[turns(f"玉山{i}？"), turns(f"Who is {i}?", "Why?"), turns(f"q{i}", f"你是誰{i}？")][i % 3]
                                       for i in range(examples)])
    kinds = ["identity"] * 5 + ["refusal"] * 7 + ["unknown"] * 3
    write_jsonl(folder / "eval_heldout.jsonl", [{"question": f"f{i}", "answer": "x", "kind": FACT_KINDS[i % 2], "lang": ["zh", "en"][i % 3 > 0]}
                                                for i in range(facts)]
                + [{"question": f"b{i}", "answer": "y", "kind": kind, "lang": "zh"} for i, kind in enumerate(kinds)])
    return folder


def test_the_datasize_subsets_are_nested_and_the_sample_fixed(tmp_path):
    world = tiny_world(tmp_path / "world")
    runs = datasize_runs(world, tmp_path / "study", WAYS)
    subsets = {r["labels"]["size"]: [json.dumps(row) for row in read_jsonl(r["data"])] for r in runs}
    assert sorted(subsets) == [30, 100, 300, 1000, 1500]  # at least five sizes, from about 30 to all
    sizes = sorted(subsets)
    for small, large in zip(sizes, sizes[1:]):
        assert subsets[large][:small] == subsets[small] and len(set(subsets[large])) == large  # nested, no repeats
    assert [(r["labels"]["run"], r["labels"]["init"]) for r in runs[:3]] == [(n, i) for n, i, _ in WAYS]
    assert len({r["dir"] for r in runs}) == len(runs) == 15
    steps = {(r["labels"]["size"], r["labels"]["init"]): r["labels"]["steps"] for r in runs}  # finetune.py's passes over all
    assert steps[1500, "pretrained"] == 600 and steps[1000, "pretrained"] == 400 and steps[300, "pretrained"] == 120
    assert steps[1500, "random"] == 1200 and steps[300, "random"] == 240 and steps[30, "random"] == 100
    assert all(f"--max_iters={r['labels']['steps']}" in r["flags"] for r in runs)
    sample = read_jsonl(runs[0]["eval"])
    assert sum(r["kind"] in FACT_KINDS for r in sample) == EVAL_FACTS and sum(r["kind"] not in FACT_KINDS for r in sample) == 15
    again = datasize_runs(world, tmp_path / "again", WAYS)  # the same subsets and sample every time
    assert read_jsonl(again[0]["eval"]) == sample and read_jsonl(again[-1]["data"]) == read_jsonl(runs[-1]["data"])
    assert nested_subsets(list(range(50)), [30, 100, 0]) == {30: nested_subsets(list(range(50)), [30])[30], 0: nested_subsets(
        list(range(50)), [0])[0]}  # a size above the data is left out: "all" covers it


def test_the_crosslingual_data_holds_one_language_each(tmp_path):
    world = tiny_world(tmp_path / "world")
    docs = ["玉山是台灣最高的山。", "Yushan is the highest mountain in Taiwan.", "聖母峰是世界最高的山。", "The Nile is long."] * 5
    (world / "pretrain.txt").write_text("\n\n".join(docs) + "\n", encoding="utf-8")
    meta = write_dataset(docs, world, 4096, 0.1, ["test"])
    runs = crosslingual_runs(world, tmp_path / "study", 0.1)
    data = {r["labels"]["finetune"]: read_jsonl(r["data"]) for r in runs}
    assert {language(row) for row in data["zh"]} == {"zh"} and len(data["zh"]) == 500
    assert {language(row) for row in data["en"]} == {"en"} and len(data["en"]) == 500
    assert data["zh + en"] == [row for row in read_jsonl(world / "sft.jsonl") if language(row) != "mixed"]
    assert not any("你" in m["content"] for row in data["en"] for m in row["messages"])  # nothing Chinese in the English data
    assert [(r["labels"]["pretrain"], r["labels"]["finetune"]) for r in runs][-1] == ("the world's Chinese text", "en")
    assert len({r["dir"] for r in runs}) == len(runs) == 6
    chinese = {r["dataset"] for r in runs} - {None}
    (dataset,) = chinese
    zh_meta = json.loads((dataset / "meta.json").read_text())
    assert zh_meta["vocab"] == meta["vocab"] and zh_meta["documents"] == 10  # the Chinese documents, the world's vocabulary
    from tokenizer import Tokenizer
    ids = read_tokens(dataset / "train.bin").tolist() + read_tokens(dataset / "val.bin").tolist()
    text = Tokenizer(meta["vocab"]).decode(ids)
    assert "玉山" in text and "聖母峰" in text and "Nile" not in text and "Yushan" not in text


def test_the_routes_data_holds_out_what_it_says(tmp_path):
    from data.world.prepare import generate
    world = tmp_path / "world"
    world.mkdir()
    write_jsonl(world / "people.jsonl", generate(1337, 60, 1, 1)["people"])
    runs = {r["labels"]["model"]: r for r in routes_runs(world, tmp_path / "study")}
    assert len(runs) == 9 and runs["generalist"]["labels"]["tasks"] == list(TASKS)

    def asked(run):  # the instruction data's questions, each put to the task whose wording it has
        questions = [row["messages"][0]["content"] for row in read_jsonl(run["data"])]
        return {task_of(q) for q in questions}, questions
    def task_of(question):
        return next((t for t, wording in TASKS.items() if wording and any(
            question.startswith(w.split("{")[0]) for w in wording.values())), "qa")
    for task in TASKS:
        assert asked(runs[f"specialist: {task}"])[0] == {task}
        assert asked(runs[f"generalist without {task}"])[0] == set(TASKS) - {task}  # the held-out task never appears
    assert asked(runs["generalist"])[0] == set(TASKS)
    test = read_jsonl(runs["generalist"]["eval"])
    assert {r["kind"] for r in test} == set(TASKS) and all(task_of(r["question"]) == r["kind"] for r in test)
    people = read_jsonl(world / "people.jsonl")
    heldout = {n for p in people if p["split"] == "heldout" for n in p["name"]}
    taught = {n for p in people if p["split"] == "train" for n in p["name"]}
    questions = asked(runs["generalist"])[1]
    assert all(any(n in r["question"] for n in heldout) for r in test)  # every test question is about a held-out person
    assert not any(n in q for q in questions for n in heldout) and all(any(n in q for n in taught) for q in questions[:50])
    row = next(r for r in test if r["kind"] == "correct")
    assert row["answer"] not in row["question"] and row["answer"].split()[0][:2] in row["question"]  # a wrong fact, corrected


def test_scores_and_flops_from_a_runs_files(tmp_path):
    write_jsonl(tmp_path / "eval.jsonl", [{"kind": "person", "correct": True, "lang": "zh"},
                                          {"kind": "place", "correct": False, "lang": "en"},
                                          {"kind": "person", "correct": True, "lang": "en"},
                                          *[{"kind": kind, "correct": kind in ("identity", "world"), "lang": "zh"}
                                            for kind in ("identity", "refusal", "world", "unknown")]])
    got = scores(tmp_path)
    assert got["facts"] == (2 / 3, 3) and got["identity"] == (1, 1) and got["refusal"] == (0, 1)
    assert got["facts zh"] == (1, 1) and got["facts en"] == (0.5, 2)
    config = dict(vocab_size=50, n_layer=1, n_head=2, n_embd=16, block_size=8)
    write_jsonl(tmp_path / "log.jsonl", [{"step": 1, "tokens": 40}, {"step": 1, "val_loss": 1.0}, {"step": 2, "tokens": 24}])
    model = GPT(GPTConfig(**config))
    assert finetuning_flops(tmp_path, config) == model.training_flops(40) + model.training_flops(24)
    assert finetuning_flops(tmp_path, config, lora=True) == model.training_flops(64, weights_train=False)
    checkpoint = {"step": 10, "model_config": config, "config": {"batch_size": 3, "gradient_accumulation_steps": 2, "block_size": 8}}
    assert pretraining_flops(checkpoint) == 10 * model.training_flops(48)


def test_the_datasize_table_shows_mean_spread_and_compute_share():
    def result(size, way, seed, facts):
        return {"size": size, "run": way[0], "init": way[1], "steps": 100, "seed": seed, "seconds": 60.0, "flops": size * 1e9,
                "pretrain_flops": 1e14, "scores": {"facts": (facts, 300), "identity": (0.5, 22), "refusal": (1.0, 31)}}
    rows = [result(size, way, seed, facts) for size in (30, 2654) for way in WAYS for seed, facts in ((1, 0.4), (2, 0.6))]
    table = datasize_table({"command": "python experiment.py --study=datasize --seeds=2", "results": rows, "pretrain_seconds": {}}, WAYS)
    lines = table.splitlines()
    assert "| 30 (100/100 steps) | 50.0 ± 14.1% · 0.0% | 50.0 ± 14.1% · 0.0% | 50.0 ± 14.1% · 0.0% |" in lines
    assert "| 2,654 (100/100 steps) | 50.0 ± 14.1% · 2.7% | 50.0 ± 14.1% · 2.7% | 50.0 ± 14.1% · 2.7% |" in lines
    assert "| 30 | 50.0 ± 0.0% / 100.0 ± 0.0% | 50.0 ± 0.0% / 100.0 ± 0.0% | 50.0 ± 0.0% / 100.0 ± 0.0% |" in lines
    assert "6 fine-tuning runs" in table and "took 6.0 min per seed" in table and "300 fact questions" in table
    assert "Held-out facts exact match (300 fact questions) · " in lines[2] and "at least 100:" in lines[2]


def test_the_routes_table_puts_each_zero_shot_task_beside_its_baselines():
    """Each task: its specialist, the generalist, the generalist without it, and the best other
    specialist; then every model on every task."""
    from studies import routes_table
    models = {**{f"specialist: {t}": [t] for t in TASKS}, "generalist": TASKS,
              **{f"generalist without {t}": [o for o in TASKS if o != t] for t in TASKS}}
    score = {"specialist: qa": 0.8, "generalist": 0.7, "generalist without qa": 0.2, "specialist: correct": 0.1}
    rows = [{"model": m, "tasks": tasks, "seed": seed, "seconds": 1.0,
             "scores": {t: ((score.get(m, 0.0) if t == "qa" else 0.5) + seed / 100, 100) for t in TASKS}}
            for m, tasks in models.items() for seed in (0, 2)]
    table = routes_table({"command": "python experiment.py --study=routes --seeds=2", "results": rows, "pretrain_seconds": {}})
    headline, every_model = table.split("\n\nEvery model on every task:\n\n")
    headline = headline.splitlines()
    assert "| qa | 81.0 ± 1.4% | 71.0 ± 1.4% | **21.0 ± 1.4%** | **11.0 ± 1.4%** |" in headline  # the best other: correct's
    assert len(headline) == 4 + 2 + len(TASKS) and "9 fine-tuning runs" in headline[0]
    assert "| generalist without qa | **21.0 ± 1.4%** | 51.0 ± 1.4% |" in every_model and every_model.count("\n") == 2 + len(models)


@pytest.mark.parametrize("study", STUDIES)
def test_the_docs_show_each_recorded_study(study):
    """docs/studies.md's tables are what experiment.py renders from the record it wrote beside them."""
    from cli import readme_markers
    from conftest import ROOT
    from experiment import RUNS
    begin, end = readme_markers(f"{study} study")
    block = (ROOT / "docs" / "studies.md").read_text(encoding="utf-8").split(begin, 1)[1].split(end, 1)[0]
    record_path = ROOT / "docs" / f"{study}_study.json"
    if block == "\n" and not record_path.exists():
        pytest.skip(f"the {study} study has not been run into the docs yet")
    assert block == "\n" + study_table(study, json.loads(record_path.read_text(encoding="utf-8")), RUNS)
