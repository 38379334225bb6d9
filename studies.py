"""
The lecture's further claims, each a study of experiment.py on the same pretraining runs:

    python experiment.py --study=crosslingual # 舉一反三 across languages
    python experiment.py --study=datasize     # instruction fine-tuning is 畫龍點睛
    python experiment.py --study=routes       # 一堆專才 or 一個通才
    python experiment.py --study=all          # the experiment and every study, one pretraining per seed

crosslingual: the lecture's Multi-BERT table at small scale. Fine-tune (fully) on the Chinese
questions only, on the English ones only, on both, and from random weights; test held-out people
and countries in each language. Then pretrain on the world's Chinese text alone (same steps, same
vocabulary) and fine-tune on English: does the transfer need pretraining in both languages? The
lecture's figures (DRCD, Chinese reading comprehension, exact match): Multi-BERT fine-tuned on
Chinese 81.2, on English only 63.3, on both 82.6; QANet without pretraining 66.1.

datasize: held-out exact match against the number of fine-tuning examples, on nested subsets of
the world's instructions from 30 to all of them, for the three ways of fine-tuning of the
experiment, with each run's fine-tuning compute as a share of its pretraining's. The lecture's
figures: LIMA fine-tuned on 1,000 examples; Flan-PaLM's instruction tuning took 0.2% of its
pretraining compute.

routes: the lecture's two routes. Four instruction tasks on the world's people, each with its own
wording: question answering, translation (請幫忙翻譯：…), correcting a planted error (請修改錯誤：…),
a one-sentence summary (用一句話介紹…). A specialist fine-tuned on each task alone; one generalist
on all four; and the generalist without each task, asked that task zero-shot (FLAN, T0).

Every study run is a finetune.py run on data written here, scored on a fixed sample of the
held-out questions: every behaviour question and EVAL_FACTS fact questions (the whole held-out
set takes minutes per run, and a study has many runs); the routes study's runs, on TASK_TEST
questions of each task. This file holds what the studies are
(their data, their scores, their tables); experiment.py runs them.
"""
from __future__ import annotations

import json
import random
import re
import statistics
from pathlib import Path

from data.prepare import write_dataset
from data.world.prepare import as_messages, read_jsonl, write_jsonl

SIZES = [30, 100, 300, 1000, 0]  # fine-tuning examples of the datasize study; 0: all of them
MIN_STEPS = 100  # the fewest steps a datasize run takes (finetune.py warms up for 50)
EVAL_FACTS = 300  # held-out fact questions each study run answers
SAMPLE_SEED = 0  # the subsets and the sample are the same for every seed: seeds vary the training only
FACT_KINDS = ("person", "place")
STUDIES = ["crosslingual", "datasize", "routes"]
CJK = re.compile("[\u4e00-\u9fff]")


def eval_sample(world: Path, folder: Path) -> Path:
    """The held-out questions every study run answers: EVAL_FACTS facts drawn once, every other kind."""
    rows = read_jsonl(world / "eval_heldout.jsonl")
    facts = [r for r in rows if r["kind"] in FACT_KINDS]
    chosen = set(map(id, random.Random(SAMPLE_SEED).sample(facts, min(EVAL_FACTS, len(facts)))))
    path = folder / "eval_sample.jsonl"
    write_jsonl(path, [r for r in rows if r["kind"] not in FACT_KINDS or id(r) in chosen])
    return path


def nested_subsets(rows: list, sizes: list[int]) -> dict[int, list]:
    """One shuffle, then its first n rows for each size below len(rows), and all of them (0):
    each subset holds every smaller one."""
    order = random.Random(SAMPLE_SEED).sample(rows, len(rows))
    return {n: order[:n or len(rows)] for n in sizes if n < len(rows)}


def datasize_runs(world: Path, folder: Path, ways: list[tuple[str, str, list[str]]]) -> list[dict]:
    """The datasize study's runs: each size fine-tuned each way (experiment.RUNS), on data written
    to folder, for as many passes over it as finetune.py's default steps make over all the data
    (at least MIN_STEPS steps: a handful of examples still learns the format)."""
    from finetune import AUTO_STEPS
    folder.mkdir(parents=True, exist_ok=True)
    evaluation, examples = eval_sample(world, folder), read_jsonl(world / "sft.jsonl")
    runs = []
    for n, rows in nested_subsets(examples, SIZES).items():
        data = folder / f"sft_{n or 'all'}.jsonl"
        write_jsonl(data, rows)
        steps = {init: max(MIN_STEPS, round(AUTO_STEPS["scratch" if init == "random" else "pretrained"] * len(rows) / len(examples)))
                 for init in ("random", "pretrained")}
        runs += [{"labels": {"size": len(rows), "run": name, "init": init, "steps": steps[init]}, "dataset": None, "data": data,
                  "eval": evaluation, "flags": [*flags, f"--max_iters={steps[init]}"],
                  "title": f"{len(rows):,} examples, {name} fine-tuning from {init} weights",
                  "dir": f"{len(rows)}_{name.lower()}_{init}"} for name, init, flags in ways]
    return runs


def language(row: dict) -> str:
    """zh or en: the language of every user turn of an instruction example; mixed otherwise."""
    chinese = [bool(CJK.search(m["content"])) for m in row["messages"] if m["role"] == "user"]
    return "zh" if all(chinese) else "en" if not any(chinese) else "mixed"


def chinese_world(world: Path, folder: Path, val_fraction: float) -> Path:
    """The world's Chinese documents alone, with the whole world's vocabulary (English questions
    then read the same tokens): the one-language pretraining of the crosslingual study."""
    docs = [doc for doc in (world / "pretrain.txt").read_text(encoding="utf-8").strip().split("\n\n") if CJK.search(doc)]
    vocab = json.loads((world / "meta.json").read_text(encoding="utf-8"))["vocab"]
    dataset = folder / "world_zh"
    write_dataset(docs, dataset, len(vocab), val_fraction, [str(world / "pretrain.txt")], vocab=vocab)
    return dataset


def crosslingual_runs(world: Path, folder: Path, val_fraction: float) -> list[dict]:
    """The crosslingual study's runs (full fine-tuning, as the lecture's BERT), on data written to folder."""
    folder.mkdir(parents=True, exist_ok=True)
    evaluation, rows = eval_sample(world, folder), read_jsonl(world / "sft.jsonl")
    data = {}
    for name, languages in (("zh", ("zh",)), ("en", ("en",)), ("zh + en", ("zh", "en"))):  # conversations that switch language: in neither
        data[name] = folder / f"sft_{name.replace(' + ', '_')}.jsonl"
        write_jsonl(data[name], [r for r in rows if language(r) in languages])
    chinese = chinese_world(world, folder, val_fraction)
    plan = [("the world (zh + en)", None, [], "zh"), ("the world (zh + en)", None, [], "en"),
            ("the world (zh + en)", None, [], "zh + en"), ("none (random weights)", None, ["--init_from=scratch"], "zh + en"),
            ("the world's Chinese text", chinese, [], "zh"), ("the world's Chinese text", chinese, [], "en")]
    return [{"labels": {"pretrain": pretrain, "finetune": tuned}, "dataset": dataset, "data": data[tuned], "eval": evaluation,
             "flags": flags, "title": f"pretraining: {pretrain}, fine-tuning: {tuned}",
             "dir": f"{'chinese' if dataset else 'random' if flags else 'world'}-{tuned.replace(' + ', '_')}"}
            for pretrain, dataset, flags, tuned in plan]


# The routes study's tasks on the world's people, each with its own instruction wording: {n} a
# name, {s} a sentence. Answers use the first wording of each fact (PERSON_SENTENCES).
TASKS = {"qa": None,  # the world's own questions (PERSON_QUESTIONS)
         "translate": {"zh": "請幫忙翻譯：{s}", "en": "Please translate: {s}"},
         "correct": {"zh": "請修改錯誤：{s}", "en": "Please correct the error: {s}"},
         "summarize": {"zh": "用一句話介紹{n}", "en": "Describe {n} in one sentence."}}
SUMMARY = {"zh": "{n}畢業於{u}，在{e}工作", "en": "{n} graduated from {u} and works at {e}"}
TASK_TEST = 100  # held-out questions per task that every routes run answers


def task_examples(person: dict, others: list[dict], rng: random.Random) -> list[dict]:
    """Every task's questions about one person, in both languages: {"task", "question", "answer", "lang"}."""
    from data.world.prepare import PERSON_QUESTIONS, PERSON_SENTENCES
    out = []
    for lang, li, other, ol in (("zh", 0, "en", 1), ("en", 1, "zh", 0)):
        def say(attr: str, value: str, lang: str = lang, li: int = li) -> str:
            return PERSON_SENTENCES[lang][attr][0].format(n=person["name"][li], v=value)
        rows = []
        for attr in PERSON_SENTENCES[lang]:
            value = person[attr][li]
            wrong = rng.choice([o[attr][li] for o in others if o[attr][li] != value])  # another person's: a real value
            rows += [("qa", PERSON_QUESTIONS[lang][attr][0].format(n=person["name"][li]), value),
                     ("translate", TASKS["translate"][lang].format(s=say(attr, value)), say(attr, person[attr][ol], other, ol)),
                     ("correct", TASKS["correct"][lang].format(s=say(attr, wrong)), say(attr, value))]
        rows.append(("summarize", TASKS["summarize"][lang].format(n=person["name"][li]),
                     SUMMARY[lang].format(n=person["name"][li], u=person["university"][li], e=person["employer"][li])))
        out += [{"task": task, "question": question, "answer": answer, "lang": lang} for task, question, answer in rows]
    return out


def routes_runs(world: Path, folder: Path) -> list[dict]:
    """The routes study's runs: a specialist per task, one generalist on every task, and the
    generalist without each task (that task then asked zero-shot); every run answers every task's
    held-out questions (about held-out people: what pretraining alone told)."""
    folder.mkdir(parents=True, exist_ok=True)
    people, rng = read_jsonl(world / "people.jsonl"), random.Random(SAMPLE_SEED)
    examples = {split: [e for p in people if p["split"] == split for e in task_examples(p, people, rng)] for split in ("train", "heldout")}
    pools = {task: [e for e in examples["heldout"] if e["task"] == task] for task in TASKS}
    test = [{"question": e["question"], "answer": e["answer"], "kind": task, "lang": e["lang"]} for task, pool in pools.items()
            for e in rng.sample(pool, min(TASK_TEST, len(pool)))]
    evaluation = folder / "eval_tasks.jsonl"
    write_jsonl(evaluation, test)
    mixes = {**{f"specialist: {t}": [t] for t in TASKS}, "generalist": list(TASKS),
             **{f"generalist without {t}": [u for u in TASKS if u != t] for t in TASKS}}
    runs = []
    for model, tasks in mixes.items():
        data = folder / f"sft_{model.replace(': ', '_').replace(' ', '_')}.jsonl"
        rows = [e for e in examples["train"] if e["task"] in tasks]
        write_jsonl(data, [as_messages([(e["question"], e["answer"])]) for e in random.Random(SAMPLE_SEED).sample(rows, len(rows))])
        runs.append({"labels": {"model": model, "tasks": tasks}, "dataset": None, "data": data, "eval": evaluation, "flags": [],
                     "title": f"{model} ({len(rows):,} examples)", "dir": data.stem.removeprefix("sft_")})
    return runs


def finetuning_flops(run_dir: Path, model_config: dict, lora: bool = False) -> float:
    """Matmul FLOPs of a finished finetune.py run, from the tokens of each step in its log.jsonl
    (every position counted at the output layer: a slight over-count, prompts carry no loss)."""
    from model import GPT, GPTConfig
    model = GPT(GPTConfig(**model_config))
    steps = [row["tokens"] for row in read_jsonl(run_dir / "log.jsonl") if "tokens" in row]
    return sum(model.training_flops(tokens, weights_train=not lora) for tokens in steps)


def pretraining_flops(checkpoint: dict) -> float:
    """Matmul FLOPs of the pretraining that wrote checkpoint, run as experiment.py runs it (one
    process): each step reads batch_size x gradient_accumulation_steps sequences of block_size."""
    from model import GPT, GPTConfig
    c = checkpoint["config"]
    tokens = c["batch_size"] * c["gradient_accumulation_steps"] * c["block_size"]
    return checkpoint["step"] * GPT(GPTConfig(**checkpoint["model_config"])).training_flops(tokens)


def scores(run_dir: Path) -> dict:
    """A study run's share right on each kind of the sample, and the kind's count, from finetune.py's eval.jsonl."""
    rows = read_jsonl(run_dir / "eval.jsonl")
    kinds = {"facts": (FACT_KINDS, ("zh", "en")), "facts zh": (FACT_KINDS, ("zh",)), "facts en": (FACT_KINDS, ("en",)),
             **{kind: ((kind,), ("zh", "en")) for kind in ("identity", "refusal", "world", "unknown", *TASKS)}}
    chosen = {name: [r["correct"] for r in rows if r["kind"] in of and r["lang"] in languages]
              for name, (of, languages) in kinds.items()}
    return {name: (statistics.mean(flags), len(flags)) for name, flags in chosen.items() if flags}


def cell(values: list[float]) -> str:
    mean = 100 * statistics.mean(values)
    return f"{mean:.1f}%" if len(values) == 1 else f"{mean:.1f} ± {100 * statistics.stdev(values):.1f}%"


def opening(record: dict, what: str) -> str:
    """A study table's first line: its command, its seeds, and the wall time of what it ran per seed."""
    seeds = {r["seed"] for r in record["results"]}
    seconds = sum(r["seconds"] for r in record["results"]) + sum(record["pretrain_seconds"].values())
    return (f"`{record['command']}`: {len(seeds)} seed{'s' * (len(seeds) > 1)}" + (", mean ± standard deviation" if len(seeds) > 1 else "")
            + f"; {what} took {seconds / len(seeds) / 60:.1f} min per seed.")


def datasize_table(record: dict, ways: list[tuple[str, str, list[str]]]) -> str:
    """Held-out facts, then unseen identity/refusal phrasings, against the number of examples,
    each facts cell with its run's fine-tuning compute as a share of the pretraining compute."""
    results = record["results"]
    sizes = sorted({r["size"] for r in results})
    runs = len(results) // len({r["seed"] for r in results})
    how = (f"Held-out facts exact match ({results[0]['scores']['facts'][1]} fact questions) · fine-tuning compute as a share of "
           "pretraining's (Flan-PaLM: 0.2%); steps from random / pretrained weights, each size trained for as many passes "
           f"as finetune.py's default steps make over all the data, at least {MIN_STEPS}:")
    lines = [opening(record, f"the study's {runs} fine-tuning runs (training and scoring; the pretraining is the experiment's)"),
             "", how, "", "| examples | " + " | ".join(f"{name}, {init}" for name, init, _ in ways) + " |",
             "| --- | " + " | ".join("---" for _ in ways) + " |"]
    for size in sizes:
        cells = []
        for name, init, _ in ways:
            group = [r for r in results if (r["size"], r["run"], r["init"]) == (size, name, init)]
            share = statistics.mean(r["flops"] / r["pretrain_flops"] for r in group)
            cells.append(f"{cell([r['scores']['facts'][0] for r in group])} · {share:.1%}")
        steps = "/".join(str(next(r["steps"] for r in results if r["size"] == size and r["init"] == init))
                         for init in dict.fromkeys(init for _, init, _ in ways))
        lines.append(f"| {size:,} ({steps} steps) | " + " | ".join(cells) + " |")
    identity, refusal = results[0]["scores"]["identity"][1], results[0]["scores"]["refusal"][1]
    lines += ["", f"Unseen identity / refusal phrasings answered right (all of the held-out ones: {identity} / {refusal}):", "",
              "| examples | " + " | ".join(f"{name}, {init}" for name, init, _ in ways) + " |",
              "| --- | " + " | ".join("---" for _ in ways) + " |"]
    for size in sizes:
        groups = [[r for r in results if (r["size"], r["run"], r["init"]) == (size, name, init)] for name, init, _ in ways]
        lines.append(f"| {size:,} | " + " | ".join(
            f"{cell([r['scores']['identity'][0] for r in g])} / {cell([r['scores']['refusal'][0] for r in g])}" for g in groups) + " |")
    return "\n".join(lines) + "\n"


def crosslingual_table(record: dict) -> str:
    """Held-out facts in each language, for each pretraining and fine-tuning language, in the
    lecture's layout (pretraining, fine-tuning, test)."""
    results = record["results"]
    first = [r for r in results if r["seed"] == results[0]["seed"]]
    lines = [opening(record, f"the study's {len(first)} fine-tuning runs and one pretraining on the Chinese text"), "",
             f"Held-out facts exact match, full fine-tuning ({first[0]['scores']['facts zh'][1]} Chinese and "
             f"{first[0]['scores']['facts en'][1]} English fact questions drawn once from the held-out set):", "",
             "| pretraining | fine-tuning | test: zh | test: en |", "| --- | --- | --- | --- |"]
    for row in first:
        group = [r for r in results if (r["pretrain"], r["finetune"]) == (row["pretrain"], row["finetune"])]
        lines.append(f"| {row['pretrain']} | {row['finetune']} | {cell([r['scores']['facts zh'][0] for r in group])} "
                     f"| {cell([r['scores']['facts en'][0] for r in group])} |")
    return "\n".join(lines) + "\n"


def routes_table(record: dict) -> str:
    """Each task by its specialist, the generalist, the generalist without it, and the best
    specialist of another task (the baseline a zero-shot task must beat); then every model's exact
    match on each task's held-out questions, zero-shot cells marked."""
    results = record["results"]
    models = list(dict.fromkeys(r["model"] for r in results))
    lines = [opening(record, f"the study's {len(models)} fine-tuning runs"), "",
             f"Exact match on each task's {results[0]['scores']['qa'][1]} held-out questions (people only pretraining told of), full "
             "fine-tuning; **bold**: a task the model was never taught (zero-shot):", ""]

    def shares(model: str, task: str) -> list[float]:  # one per seed
        return [r["scores"][task][0] for r in results if r["model"] == model]
    lines += ["| task | its specialist | generalist | generalist without it | best specialist of another task |",
              "| --- | --- | --- | --- | --- |"]
    for task in TASKS:
        other = max((shares(f"specialist: {o}", task) for o in TASKS if o != task), key=statistics.mean)
        lines.append(f"| {task} | {cell(shares(f'specialist: {task}', task))} | {cell(shares('generalist', task))} "
                     f"| **{cell(shares(f'generalist without {task}', task))}** | **{cell(other)}** |")
    lines += ["", "Every model on every task:", "",
              "| model | " + " | ".join(TASKS) + " |", "| --- | " + " | ".join("---" for _ in TASKS) + " |"]
    for model in models:
        taught = next(r["tasks"] for r in results if r["model"] == model)
        cells = [cell(shares(model, task)) for task in TASKS]
        cells = [c if task in taught else f"**{c}**" for c, task in zip(cells, TASKS)]
        lines.append(f"| {model} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def study_runs(name: str, world: Path, folder: Path, ways: list[tuple[str, str, list[str]]], val_fraction: float) -> list[dict]:
    """A study's runs, each {"labels", "dataset" (its own pretraining data, None: the world's),
    "data", "eval", "flags", "title", "dir"}, their data written to folder."""
    if name == "crosslingual":
        return crosslingual_runs(world, folder, val_fraction)
    return routes_runs(world, folder) if name == "routes" else datasize_runs(world, folder, ways)


def study_table(name: str, record: dict, ways: list[tuple[str, str, list[str]]]) -> str:
    """The study's tables as Markdown, for docs/studies.md."""
    if name == "crosslingual":
        return crosslingual_table(record)
    return routes_table(record) if name == "routes" else datasize_table(record, ways)
