"""experiment.py: its measurements on tiny inputs, and the whole comparison end to end on a tiny world."""
import json
import statistics

import pytest
import torch

from checkpoint import load_checkpoint
from data.world.prepare import read_jsonl
from conftest import ROOT, run_script
from experiment import random_initial_weights, relative_distance, reuse_key
from evaluate import score


def test_score_counts_exact_matches_by_kind():
    rows = [{"question": "q1", "answer": "玉山", "kind": "place"}, {"question": "q2", "answer": "the Nile", "kind": "world"},
            {"question": "q3", "answer": "聖母峰", "kind": "world"}, {"question": "q4", "answer": "Tokyo"}]
    report = score(rows, ["玉山。", "The Nile", "玉山", "tokyo"])
    assert [r["correct"] for r in report["results"]] == [True, True, False, True]
    assert report["accuracy"] == 0.75 and report["count"] == 4
    assert report["by_kind"] == {"place": (1.0, 1), "world": (0.5, 2), "all": (1.0, 1)}


def test_relative_distance():
    before = {"a": torch.tensor([3.0, 0.0]), "b": torch.tensor([[0.0, 4.0]])}
    assert relative_distance(before, before) == 0.0
    after = {"a": torch.tensor([3.0, 3.0]), "b": torch.tensor([[0.0, 8.0]])}
    assert abs(relative_distance(before, after) - 1.0) < 1e-7  # moved by sqrt(9 + 16) = 5, from a norm of 5


def test_reuse_key_sees_options_inputs_and_new_defaults(tmp_path, monkeypatch):
    """A finished pretraining is reused only for the same run: a changed default of pretrain.py is a new run."""
    import pretrain
    data = tmp_path / "train.bin"
    data.write_bytes(b"abc")
    key = reuse_key("pretrain.py", ["--seed=1"], [data])
    assert key == reuse_key("pretrain.py", ["--seed=1"], [data]) != reuse_key("pretrain.py", ["--seed=2"], [data])
    monkeypatch.setitem(pretrain.OPTIONS, "max_iters", (7, "steps"))
    assert reuse_key("pretrain.py", ["--seed=1"], [data]) != key
    monkeypatch.undo()
    data.write_bytes(b"abd")
    assert reuse_key("pretrain.py", ["--seed=1"], [data]) != key
    assert reuse_key("measure", [], [data]) == reuse_key("measure", [], [data])  # a step of experiment.py's own


def test_scratch_initial_weights_are_drawn_again_exactly(tiny_checkpoint, tmp_path):
    """The distance of the random-init run is measured from the weights finetune.py really started from."""
    data = tmp_path / "sft.jsonl"
    data.write_text(json.dumps({"instruction": "你是誰？", "output": "我是人工智慧"}, ensure_ascii=False) + "\n")
    out = tmp_path / "scratch"
    run_script("finetune.py", f"--base={tiny_checkpoint}", f"--data={data}", f"--out_dir={out}", "--init_from=scratch",
               "--seed=5", "--max_iters=1", "--learning_rate=1e-30", "--warmup_iters=1", "--dtype=float32", check=True)
    trained = load_checkpoint(out / "ckpt.pt")["model"]
    start = random_initial_weights(load_checkpoint(tiny_checkpoint)["model_config"], seed=5)
    assert relative_distance(start, {k: trained[k] for k in start}) < 1e-6
    assert relative_distance(random_initial_weights(load_checkpoint(tiny_checkpoint)["model_config"], seed=6),
                             {k: trained[k] for k in start}) > 0.1  # another seed draws other weights


TINY_WORLD = "--people=6 --bios_zh=1 --bios_en=1 --conversations=8 --unknown_names=30"  # 1,500: six times the text
TINY_FINETUNE = "--max_iters=4 --eval_interval=4 --eval_iters=2 --batch_size=8 --dtype=float32"


@pytest.fixture(scope="module")
def tiny_experiment(tmp_path_factory):
    """Two seeds of the whole experiment on a tiny world and model: (its folder, its run, the model options)."""
    out = tmp_path_factory.mktemp("experiment") / "exp"
    tiny = "--n_layer=1 --n_head=2 --n_embd=32 --block_size=256 --batch_size=4 --eval_iters=2 --dtype=float32"
    common = [f"--out_dir={out}", "--readme=false", "--seeds=2", f"--world_args={TINY_WORLD}",
              f"--pretrain_args={tiny} --max_iters=20 --eval_interval=20"]
    run_script("experiment.py", *common, "--study=pretraining", check=True, timeout=300)  # the models alone, first
    assert sorted(p.name for p in out.iterdir()) == ["seed1337", "seed1338", "world"]
    result = run_script("experiment.py", *common, f"--finetune_args={TINY_FINETUNE}", "--jobs=2", check=True, timeout=600)
    return out, result, tiny


def test_tiny_experiment_end_to_end(tiny_experiment):
    out, result, tiny = tiny_experiment
    assert result.stdout.count("pretraining: reusing") == 2  # what --study=pretraining made
    for seed in (1337, 1338):  # --jobs=2: the seeds side by side, each stage's output in its seed's log
        log = (out / f"seed{seed}" / "log.txt").read_text(encoding="utf-8")
        assert log.count(f"=== seed {seed}, ") == 3 and "checkpoint:" in log and f"(output: {out / f'seed{seed}' / 'log.txt'})" in result.stdout
    results = json.loads((out / "results.json").read_text(encoding="utf-8"))["results"]
    assert [(r["run"], r["init"], r["seed"]) for r in results] == [
        (run, init, seed) for seed in (1337, 1338) for run, init in (("full", "random"), ("full", "pretrained"), ("LoRA", "pretrained"))]
    for r in results:
        assert 0 <= r["heldout"] <= 1 and 0 <= r["taught"] <= 1 and r["distance"] > 0
        assert r["heldout_count"] > 50 and "世界最高的山是哪座？" in r["verbatim"]
        sizes = {key: n for key, (share, n) in r["behaviour"].items()}
        assert all(0 <= share <= 1 for share, _ in r["behaviour"].values())
        assert sizes["identity"] >= 20 and sizes["refusal"] >= 30 and sizes["world"] >= 30 and sizes["unknown"] >= 30
        assert sizes["taught_alone"] == sizes["taught_in_conversation"] > 40 and sizes["conversation_later"] > 0
        assert sizes["conversation_later_alone"] == sizes["conversation_later"]  # each later turn's question, alone too
    output_layer = load_checkpoint(out / "seed1337" / "pretrain" / "ckpt.pt")["model"]["lm_head.weight"].numel()
    assert results[0]["trainable"] - output_layer == results[1]["trainable"]  # full from pretrained keeps the output layer
    assert results[1]["trainable"] > results[2]["trainable"] and results[0]["trainable"] > 5 * results[2]["trainable"]  # LoRA: a fraction
    chat = json.loads((out / "results.json").read_text(encoding="utf-8"))["chat"]  # the turns sample.py's chat holds
    from tokenizer import CHAT_ROOM, Tokenizer
    tokenizer = Tokenizer(json.loads((out / "world" / "meta.json").read_text(encoding="utf-8"))["vocab"])
    lengths = [len(tokenizer.encode_chat([(t["question"], t["answer"])])[0]) - 1  # each turn without the opening token
               for c in map(json.loads, (out / "world" / "eval_conversations.jsonl").open(encoding="utf-8"))
               if c["set"] == "heldout" for t in c["turns"]]
    assert chat["context"] == 256 and chat["turn_tokens"] == statistics.median(lengths)
    assert (256 - CHAT_ROOM) // max(lengths) <= chat["least"] <= chat["median"] <= (256 - CHAT_ROOM) // min(lengths) + 1
    table = (out / "results.md").read_text(encoding="utf-8")
    assert f"| chat context (256 tokens): ordinary turns held, the fewest | ≥ 6 | {chat['least']} " in table
    assert "| full | random |" in table and "| LoRA | pretrained |" in table and " ± " in table  # two seeds: mean ± sd
    assert table in result.stdout
    from machine import choose_dtype, machine_name  # the machine it ran on, and its peak in pretraining's precision
    assert f"` on {machine_name()} ({choose_dtype('auto', 'cpu')} matmul peak " in table.split("\n")[0]
    assert f"'--pretrain_args={tiny} --max_iters=20 --eval_interval=20'" in table  # the command as one can type it again
    from experiment import report
    assert report(json.loads((out / "results.json").read_text(encoding="utf-8"))) == table  # the record renders the table
    again = run_script("experiment.py", f"--out_dir={out}")
    assert again.returncode == 2 and "--overwrite" in again.stderr
    # the same runs again: nothing is trained or measured anew, the table is the same
    pretrained = (out / "seed1337" / "pretrain" / "ckpt.pt").stat().st_mtime_ns
    reused = run_script(*result.args[1:], "--overwrite", check=True, timeout=300)
    assert reused.stdout.count("reusing") == 8 and "\nmeasuring " not in reused.stdout
    assert (out / "seed1337" / "pretrain" / "ckpt.pt").stat().st_mtime_ns == pretrained
    assert json.loads((out / "results.json").read_text(encoding="utf-8"))["results"] == results


def test_a_failing_stage_with_jobs_says_where_its_message_is_and_starts_nothing_more(tiny_experiment, tmp_path):
    _, _, tiny = tiny_experiment
    failed = run_script("experiment.py", f"--out_dir={tmp_path / 'exp'}", "--readme=false", "--seeds=2", "--jobs=2",
                        f"--world_args={TINY_WORLD}", f"--pretrain_args={tiny} --max_iters=20 --eval_interval=20",
                        "--finetune_args=--data=no_such.jsonl", timeout=300)  # a stage's failure (bad options fail at once)
    assert failed.returncode == 2 and "Traceback" not in failed.stderr
    assert "failed (exit status 2); its message is at the end of" in failed.stderr
    logs = [(tmp_path / "exp" / f"seed{seed}" / "log.txt").read_text(encoding="utf-8") for seed in (1337, 1338)]
    assert all(log.count("fine-tuning from") <= 1 for log in logs)  # no seed went on after the first failure
    assert any(log.rstrip().endswith("no such instruction file: no_such.jsonl") for log in logs)


def test_tuning_on_the_validation_split_gives_each_setting_mean_and_spread(tiny_experiment, tmp_path):
    out, _, _ = tiny_experiment
    args = ["docs/tune_finetune.py", f"--experiment={out}", f"--out_dir={tmp_path / 'tune'}",
            f"--finetune_args={TINY_FINETUNE}"]
    chosen = "--only=full (default: 600 steps, 2e-4)|LoRA, every superlative wording"
    seeds_and_world = ["--seeds=2", f"--world_args={TINY_WORLD} --val_conversations=12"]
    run_script(*args, chosen, *seeds_and_world, check=True, timeout=300)
    results = (tmp_path / "tune" / "results.md").read_text(encoding="utf-8")
    rows = results.split("\n\n")[0].splitlines()[2:]
    for seed in (1337, 1338):  # the default setting is the experiment's fine-tuning of each seed, weight for weight
        tuned = load_checkpoint(tmp_path / "tune" / "full_default:_600_steps_2e-4" / f"seed{seed}")["model"]
        assert all(torch.equal(w, tuned[k]) for k, w in load_checkpoint(out / f"seed{seed}" / "full_pretrained")["model"].items())
    again = run_script(*args, "--only=full (default: 600 steps, 2e-4)", *seeds_and_world, check=True, timeout=300)
    assert again.stdout.count("reusing") == 2  # the same setting again: fine-tuned once, scored the same
    assert (tmp_path / "tune" / "results.md").read_text(encoding="utf-8").splitlines()[2] == rows[0]
    assert [row.split(" | ")[0] for row in rows] == ["| full (default: 600 steps, 2e-4)",
                                                      "| LoRA, every superlative wording"]
    val = read_jsonl(out / "world" / "eval_val.jsonl")
    for row in rows:  # every measure a mean ± spread of the two seeds, over the validation split's sets
        cells = row.strip("| ").split(" | ")[1:-1]
        assert len(cells) == 10 and all(" ± " in c for c in cells)
        assert cells[1].split(" of ")[1] == cells[0].split(" of ")[1]  # every taught phrasing, after validation people
        assert cells[2].endswith("of 12") and cells[7].endswith(f"of {sum(q['kind'] == 'world' for q in val)}")
    by_kind = (tmp_path / "tune" / "results.md").read_text(encoding="utf-8").split("by kind of question")[1].splitlines()
    assert by_kind[4].startswith("| full (default: 600 steps, 2e-4) | ") and by_kind[4].count("→") == by_kind[2].count("|") - 2
    assert (tmp_path / "tune" / "LoRA_every_superlative_wording" / "world" / "sft.jsonl").exists()

    moved = run_script(*args, chosen, "--world_args=--people=7")  # another pretraining text: not these models'
    assert moved.returncode == 2 and moved.stderr.count("\n") == 1 and "pretraining text" in moved.stderr
    typo = run_script(*args, "--only=full 300 steps")
    assert typo.returncode == 2 and "no setting named 'full 300 steps'" in typo.stderr
    missing = run_script(*args, "--seeds=3")
    assert missing.returncode == 2 and "seed1339" in missing.stderr


def test_the_unsure_probe_starts_from_the_experiments_measures_and_gates_every_reply_at_the_top(tiny_experiment):
    """docs/unsure_probe.py: below confidence 0 nothing changes (experiment.py's validation
    measures, up to a reply that batching may tip); below 2 every reply is the world's don't-know reply."""
    out, _, _ = tiny_experiment
    printed = run_script("docs/unsure_probe.py", f"--experiment={out}", "--seeds=1", "--thresholds=0,2",
                         check=True, timeout=300).stdout
    for name, folder in (("full", "full_pretrained"), ("LoRA", "lora_pretrained")):
        rows = printed.split(f"\n{name}, validation")[1].splitlines()
        kinds = rows[1].strip("| ").split(" | ")[1:]
        by_threshold = {row.split(" | ")[0].strip("| "): [float(c.strip("| %")) / 100 for c in row.split(" | ")[1:]]
                        for row in rows[3:5]}
        measured = json.loads((out / "seed1337" / folder / "measures.json").read_text())["behaviour_val"]
        expected = [measured[kind][0] for kind in kinds]
        assert by_threshold["0"] == pytest.approx(expected, abs=0.05)
        assert "world" in kinds and "unknown" in kinds  # facts ... refusal wrong; harmless, unknown right:
        assert by_threshold["2"] == [float(kind in ("harmless_not_refused", "unknown")) for kind in kinds]
    bad = run_script("docs/unsure_probe.py", f"--experiment={out}", "--thresholds=0,high")
    assert bad.returncode == 2 and "--thresholds=0,high: give numbers" in bad.stderr and "Traceback" not in bad.stderr
    missing = run_script("docs/unsure_probe.py", f"--experiment={out / 'nothing'}")
    assert missing.returncode == 2 and "no experiment in" in missing.stderr


def test_the_unsure_probe_counts_either_honest_reply_as_not_answering():
    from docs.unsure_probe import answered_unknowable
    stranger = {"question": "張雅遠在哪裡出生？", "answer": "張雅遠不是這個世界裡的人", "kind": "unknown", "lang": "zh"}
    assert not answered_unknowable(stranger, "張雅遠不是這個世界裡的人") and not answered_unknowable(stranger, "我不知道")
    assert answered_unknowable(stranger, "張雅遠出生於台中") and not answered_unknowable({**stranger, "kind": "person"}, "台中")


def test_the_goal_table_marks_what_meets_issue_12s_targets():
    from experiment import goal_table

    def run(init, seed, later, literal, facts):
        behaviour = {key: (1.0, 10) for key in ("taught_alone", "taught_in_conversation", "identity", "refusal",
                                                 "harmless_not_refused", "world", "unknown", "facts", "clean")}
        behaviour.update(conversation_first=(0.60, 50), conversation_later=(later, 80), world=(0.79, 30))
        return {"run": "full", "init": init, "seed": seed, "behaviour": behaviour, "literal": literal, "heldout": facts}
    groups = [[run("random", s, 0.1, "玉山", 0.12) for s in (1, 2)],
              [run("pretrained", 1, 0.58, "聖母峰", 0.8), run("pretrained", 2, 0.56, "玉山", 0.8)]]
    rows = {line.split(" | ")[0].lstrip("| "): line for line in goal_table(groups, {"least": 5, "context": 128})[2:]}
    assert rows["chat context (128 tokens): ordinary turns held, the fewest"].endswith("| ≥ 6 | 5 ✗ |")
    assert goal_table(groups, {"least": 6, "context": 256})[-2].endswith("| ≥ 6 | 6 ✓ |")
    assert not any(line.startswith("| chat context") for line in goal_table(groups))  # a record from before it
    assert "-3.0 points ✓" in rows["conversation: turns 2+ minus turn 1"]  # the mean of -2 and -4 meets ≥ -3
    assert "79.0% ✗" in rows["world superlatives"] and "100.0% ✓" in rows["unseen identity"]
    assert "50.0% ✗" in rows["世界最高的山是哪座？ → 聖母峰, share of seeds"]  # one seed of two
    assert "12.0% ✗" in rows["random init: held-out facts"]


def test_the_turn_table_splits_each_kind_of_question_into_turn_1_and_later_turns():
    from experiment import turn_table

    def run(seed, identity_later):
        behaviour = {"first person": (0.9, 10), "later person": (0.8, 30), "alone person": (0.9, 30), "first identity": (1.0, 4),
                     "later identity": (identity_later, 8), "alone identity": (identity_later + 0.25, 8),
                     "first unknown": (0.0, 0), "later unknown": (0.0, 0)}
        return {"run": "LoRA", "init": "pretrained", "seed": seed, "behaviour": behaviour}
    group = [run(1, 0.5), run(2, 0.75)]
    rows = {line.split(" | ")[0].lstrip("| "): line for line in turn_table([group], group[:1])[5:]}
    assert set(rows) == {"person", "identity"}  # a kind no conversation asks is left out
    assert rows["identity"].endswith("| 100 ± 0% of 4 → 62 ± 18% of 8 (alone 88 ± 18%) |")  # the same questions alone


def test_the_readme_shows_the_recorded_results():
    """The README's experiment tables are what experiment.py renders from the record it wrote
    beside them: no number of theirs was copied by hand, and none can go stale unnoticed."""
    from cli import readme_markers
    from experiment import RECORD, report
    begin, end = readme_markers("experiment")
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    block = readme.split(begin, 1)[1].split(end, 1)[0]
    record = json.loads(RECORD.read_text(encoding="utf-8"))
    assert block == "\n" + report(record, brief=True)
    full = (ROOT / "docs" / "experiment.md").read_text(encoding="utf-8").split(begin, 1)[1].split(end, 1)[0]
    assert full == "\n" + report(record)


def test_one_seed_of_everything_is_the_experiment_and_each_study():
    from experiment import RECORD, report
    record = json.loads(RECORD.read_text(encoding="utf-8"))
    seeds = {r["seed"] for r in record["results"]}
    walls = {k: v for k, v in record["wall_seconds"].items() if not k.startswith("study ")}
    assert "One seed of" not in report({**record, "wall_seconds": walls})  # no study ran
    walls |= {"total": 600.0 * len(seeds), **{f"study {s} {seed}": m * 60.0 for seed in seeds for s, m in (("datasize", 20), ("routes", 5))}}
    assert ("One seed of the experiment and every study took 35.0 min: the experiment 10.0, datasize 20.0, routes 5.0."
            in report({**record, "wall_seconds": walls}, brief=True))


def test_behaviour_scores_each_later_turns_question_also_alone(tmp_path, monkeypatch):
    """A later turn's question asked alone (the split's single-question replies) beside the same question in a
    conversation: what the conversation itself costs, apart from which questions the later turns drew."""
    import evaluate
    from experiment import behaviour
    who, name = {"question": "你是誰？", "answer": "我是人工智慧", "kind": "identity"}, \
        {"question": "Ann 在哪裡出生？", "answer": "台北", "kind": "person"}
    conversations = [[who, who], [name, who], [name, who]]
    (tmp_path / "eval_conversations.jsonl").write_text("".join(
        json.dumps({"set": "val", "turns": turns}, ensure_ascii=False) + "\n" for turns in conversations), encoding="utf-8")
    monkeypatch.setattr(evaluate, "greedy_conversations", lambda model, tokenizer, questions: [
        ["我是人工智慧", "我是人工智慧"], ["台北", "我不知道"], ["高雄", "我不知道"]])
    alone = [{**who, "reply": "我是人工智慧", "correct": True}, {**name, "reply": "高雄", "correct": False}]
    measured = behaviour(None, None, tmp_path, "val", alone)
    assert measured["later identity"] == (1 / 3, 3) and measured["alone identity"] == (1.0, 3)
    assert measured["conversation_later_alone"] == (1.0, 3) and measured["first person"] == (0.5, 2)


def test_the_turn_gap_is_split_into_the_questions_drawn_and_the_conversation():
    from experiment import gap_sources

    def run(init, later, alone):
        return {"run": "LoRA", "init": init, "behaviour": {"conversation_first": (0.80, 50), "conversation_later": (later, 80),
                                                           "conversation_later_alone": (alone, 80)}}
    groups = [[run("random", 0.1, 0.1)], [run("pretrained", 0.70, 0.75), run("pretrained", 0.72, 0.75)]]
    line = gap_sources(groups)[1]
    assert line.endswith("(LoRA): the later turns' own questions -5.0 points (alone 75.0%), the conversation -4.0.")  # -9
