"""Instruction data, the held-out split, exact-match scoring, and fine-tuning end to end (full and LoRA)."""
import hashlib
import json
import math
import re
from collections import Counter

import pytest
import torch

from checkpoint import load_checkpoint, load_model
from cli import UserError
from conftest import TINY_MODEL, run_script
from evaluate import exact_match, greedy_answers, greedy_conversations, normalize_answer, read_questions
from instructions import load_instructions, parse_example
from generation import generate
from tokenizer import END, Tokenizer


def write_jsonl(path, lines):
    path.write_text("\n".join(line if isinstance(line, str) else json.dumps(line, ensure_ascii=False) for line in lines) + "\n",
                    encoding="utf-8")
    return str(path)


def test_both_shapes_parse_to_turns():
    assert parse_example({"instruction": "翻譯", "input": "How are you?", "output": "你好嗎"}) == [("翻譯\n\nHow are you?", "你好嗎")]
    assert parse_example({"instruction": "你是誰？", "output": "我是人工智慧"}) == [("你是誰？", "我是人工智慧")]
    messages = [{"role": "user", "content": "a"}, {"role": "assistant", "content": "b"},
                {"role": "user", "content": "c"}, {"role": "assistant", "content": "d"}]
    assert parse_example({"messages": messages}) == [("a", "b"), ("c", "d")]


BAD_LINES = [
    ('{"instruction": "hi", "output": ', "invalid JSON"),
    ('["a list"]', "expected a JSON object"),
    ('{"instruction": "hi"}', '"output" is missing'),
    ('{"instruction": "", "output": "x"}', '"instruction" is missing, empty'),
    ('{"instruction": "hi", "output": 5}', '"output" is missing, empty or not text'),
    ('{"messages": [{"role": "system", "content": "x"}]}', "unknown role 'system'"),
    ('{"messages": [{"role": "user", "content": "x"}]}', "does not end with an assistant turn"),
    ('{"messages": [{"role": "assistant", "content": "x"}]}', "turns alternate"),
    ('{"messages": []}', "non-empty list"),
    ('{"text": "x"}', 'neither "messages" nor'),
    (json.dumps({"instruction": "長" * 200, "output": "x"}), "longer than the model's context"),
    ("[" * 100_000 + "]" * 100_000, "nested too deep"),
]


@pytest.mark.parametrize("line,message", BAD_LINES)
def test_every_bad_line_is_reported_with_file_and_line(tmp_path, line, message):
    tokenizer = Tokenizer([])
    path = write_jsonl(tmp_path / "d.jsonl", [{"instruction": "ok", "output": "fine"}, "", line])
    with pytest.raises(UserError) as error:
        load_instructions([path], tokenizer, 64, skip_bad=False, train_on_prompt=False)
    assert f"{path}:3: " in str(error.value) and message in str(error.value) and "--skip_bad_lines" in str(error.value)
    examples = load_instructions([path], tokenizer, 64, skip_bad=True, train_on_prompt=False)
    assert len(examples) == 1  # the good line stays, the bad one is left out


def test_a_byte_order_mark_is_accepted(tmp_path):
    """Windows editors start UTF-8 files with a byte-order mark; the first example must survive it."""
    path = tmp_path / "bom.jsonl"
    path.write_text("\ufeff" + json.dumps({"instruction": "你是誰？", "output": "我是人工智慧"}, ensure_ascii=False) + "\n",
                    encoding="utf-8")
    [(ids, mask)] = load_instructions([str(path)], Tokenizer([]), 64, skip_bad=False, train_on_prompt=False)
    assert ids == Tokenizer([]).encode_chat([("你是誰？", "我是人工智慧")])[0]
    questions = tmp_path / "q.jsonl"
    questions.write_text("\ufeff" + json.dumps({"question": "q", "answer": "a"}) + "\n", encoding="utf-8")
    assert read_questions(str(questions)) == [{"question": "q", "answer": "a"}]


def test_a_question_file_that_is_not_utf8_empty_or_of_another_shape_is_one_line(tmp_path):
    path = tmp_path / "q.jsonl"
    for content, words in ((json.dumps({"question": "café", "answer": "a"}, ensure_ascii=False).encode("latin-1"), "not UTF-8"),
                           (b"\n\n", "holds no questions"),
                           (json.dumps({"question": "q", "answer": "a", "kind": ["x"]}).encode(), "q.jsonl:1: expected")):
        path.write_bytes(content)
        with pytest.raises(UserError, match=words):
            read_questions(str(path))


def test_missing_and_empty_instruction_files(tmp_path):
    with pytest.raises(UserError, match="no such instruction file"):
        load_instructions([str(tmp_path / "none.jsonl")], Tokenizer([]), 64, False, False)
    with pytest.raises(UserError, match="no examples"):
        load_instructions([write_jsonl(tmp_path / "e.jsonl", [""])], Tokenizer([]), 64, False, False)


def test_normalized_exact_match():
    assert normalize_answer(" 玉山。") == normalize_answer("玉山")
    assert normalize_answer("The Nile.") == normalize_answer("the nile")
    assert normalize_answer("玉山山") != normalize_answer("玉山")
    assert normalize_answer("Mount Everest") != normalize_answer("Everest")


ROUND_37 = {"more_superlatives": 30, "more_phrasings": True, "harmless_repeats": 18}  # the defaults since round 37
ROUND_41 = {**ROUND_37, "acts_text": True}  # and since round 41
ROUND_49 = {**ROUND_41, "char_tokens": True}  # and since round 49 (the vocabulary only: the text stays)
ROUND_53 = {**ROUND_49, "answerer_phrasings": True}  # and since round 53 (instruction data only)
ROUND_66 = {**ROUND_53, "more_superlatives": 80, "more_identity": True}  # and since round 66
ROUND_72 = {**ROUND_66, "unknown_names": 1500, "asked_names": True, "restate_names": True}  # and since round 72
ROUND_75 = {**ROUND_72, "n_strangers": 180}  # and since round 75 (instruction data only; --strangers on the command line)
ROUND_76 = {**ROUND_75, "behaviours_after_people": 2}  # and since round 76 (instruction data only)
# the world before round 37 (and without rounds 53, 66, 72, 75 and 76's options): each option's test turns on what it tests
BEFORE_ROUND_37 = {"more_superlatives": 0, "more_phrasings": False, "harmless_repeats": 18, "acts_text": False,
                   "answerer_phrasings": False, "more_identity": False, "unknown_names": 0, "asked_names": False,
                   "restate_names": False, "n_strangers": 60, "behaviours_after_people": 0}


def tiny_world(**options) -> dict:
    """A world of 60 people with the defaults of before round 37: each option's test compares against it."""
    from data.world.prepare import generate as generate_world
    return generate_world(seed=7, n_people=60, bios_zh=1, bios_en=1, **{**BEFORE_ROUND_37, **options})


@pytest.fixture(scope="module")
def world():
    return tiny_world()


def test_the_default_world_is_round_76s_and_every_scored_set_asks_what_it_asked(world, default_world):
    """Round 37 (docs/notebook.md) made three options default: more phrasings, their look-alikes 18
    times each, thirty more superlatives; round 41 the acts' text; round 49 char tokens; round 53 the
    answerer phrasings; round 66 eighty superlatives and more identity phrasings; round 72 the unknown
    names, read twice, and replies that say the name first; round 75 180 taught strangers; round 76 the
    taught phrasings after people. The held-out sets ask what they asked before them (round 72 rewrote
    the replies about people and strangers, a test below), and rounds 75 and 76 leave the pretraining
    text and every scored set as round 72 left them."""
    from data.world.prepare import OPTIONS
    from finetune import OPTIONS as FINETUNE_OPTIONS
    assert {name: OPTIONS[name.removeprefix("n_")][0] for name in ROUND_76} == ROUND_76  # n_strangers: --strangers
    assert FINETUNE_OPTIONS["freeze_tables"][0] == "output"  # round 49: full fine-tuning keeps the output layer,
    assert (FINETUNE_OPTIONS["lora_rank"][0], FINETUNE_OPTIONS["lora_alpha"][0]) == (16, 32)  # LoRA is rank 16
    default = default_world  # generate()'s defaults, nothing passed
    assert default == tiny_world(**{name: on for name, on in ROUND_76.items() if name != "char_tokens"})  # the text's
    before_76 = tiny_world(**{name: on for name, on in ROUND_75.items() if name != "char_tokens"})
    assert all(default[k] == before_76[k] for k in default if k != "sft")
    assert len(default["sft"]) > len(before_76["sft"])  # the exact count: the behaviours-after-people test below
    before_75 = tiny_world(**{name: on for name, on in ROUND_72.items() if name != "char_tokens"})
    assert default["docs"] == before_75["docs"] and len(default["train"]) > len(before_75["train"])
    assert all(default[split] == before_75[split] for split in ("val", "heldout"))
    assert default["conversations"] == before_75["conversations"]
    def asked(rows):
        return [{**row, "answer": ""} for row in rows]
    assert asked(default["heldout"]) == asked(world["heldout"]) and asked(default["val"]) == asked(world["val"])
    assert [asked(c["turns"]) for c in default["conversations"] if c["set"] == "heldout"] == [
        asked(c["turns"]) for c in world["conversations"] if c["set"] == "heldout"]


def test_an_outdated_default_world_is_made_again_and_ones_own_options_are_kept(tmp_path):
    """pretrain.py remakes data/world when it was made with the defaults of other code (a user who
    updates the code would otherwise train on the old world), never when a person chose its options."""
    from data.world.prepare import DEFAULTS, MADE_BY, default_world_is_current, made_by, prepare_world
    assert not default_world_is_current(tmp_path)  # made before made_by.json existed, or never
    for record, current in (({"key": made_by(DEFAULTS), "defaults": True}, True), ({"key": "older code", "defaults": True}, False),
                            ({"key": "older code", "defaults": False}, True)):
        (tmp_path / MADE_BY).write_text(json.dumps(record))
        assert default_world_is_current(tmp_path) == current, record
    assert made_by({**DEFAULTS, "people": 6}) != made_by(DEFAULTS)
    own = {**DEFAULTS, "people": 6, "bios_zh": 1, "bios_en": 1, "conversations": 8}
    prepare_world(own, tmp_path / "own")
    assert json.loads((tmp_path / "own" / MADE_BY).read_text()) == {"key": made_by(own), "defaults": False}
    assert default_world_is_current(tmp_path / "own")


def test_under_torchrun_only_local_rank_0_makes_the_world(tmp_path, monkeypatch):
    """The other processes wait until the world is current (not each making it at once), and give up
    in one line if it never is."""
    import threading
    import machine
    import pretrain
    import data.world.prepare as world_prepare
    from data.world.prepare import DEFAULTS, MADE_BY, made_by
    monkeypatch.setattr(pretrain, "DATA_DIR", tmp_path)
    monkeypatch.setattr(world_prepare, "prepare_world", lambda *a, **k: pytest.fail("rank 1 made the world"))
    monkeypatch.setenv("LOCAL_RANK", "1")
    folder = tmp_path / "world"
    folder.mkdir()
    for name in ("train.bin", "val.bin", "meta.json", "sft.jsonl"):
        (folder / name).write_bytes(b"x" * 4)
    (folder / MADE_BY).write_text(json.dumps({"key": "older code", "defaults": True}))
    made = []
    def rank_0_finishes():
        (folder / MADE_BY).write_text(json.dumps({"key": made_by(DEFAULTS), "defaults": True}))
        made.append(True)
    timer = threading.Timer(1.5, rank_0_finishes)
    timer.start()
    assert pretrain.dataset_folder("world") == folder and made == [True]  # returned only once rank 0 was done
    timer.join()
    (folder / MADE_BY).unlink()
    monkeypatch.setattr(machine.time, "monotonic", iter([0, 0, 10**6]).__next__)  # the deadline passes at once
    with pytest.raises(UserError, match="waited 30 minutes for local rank 0"):
        pretrain.dataset_folder("world")


def test_an_outdated_default_world_is_made_again_but_not_when_resuming(tmp_path, monkeypatch, capsys):
    """What pretrain.py, finetune.py and quality.py call: a user who updates the code and fine-tunes
    again gets today's instruction data (round 53 changed only that), not the sft.jsonl an older
    version wrote; a resumed run keeps what it began on; a missing world is made."""
    import data.world.prepare as world_prepare
    from data.world.prepare import DEFAULTS, MADE_BY, made_by, make_default_world_if_needed
    made = []
    monkeypatch.setattr(world_prepare, "prepare_world", lambda config=None, out_dir=None: made.append(out_dir))
    make_default_world_if_needed(tmp_path, resuming=True)
    assert made == [tmp_path] and "first run only" in capsys.readouterr().out
    for name in ("meta.json", "sft.jsonl"):
        (tmp_path / name).write_text("{}")
    (tmp_path / MADE_BY).write_text(json.dumps({"key": "older code", "defaults": True}))
    make_default_world_if_needed(tmp_path, resuming=True)
    assert made == [tmp_path]
    make_default_world_if_needed(tmp_path, resuming=False)
    assert made == [tmp_path] * 2 and "made by another version of data/world/prepare.py" in capsys.readouterr().out
    for record in ({"key": made_by(DEFAULTS), "defaults": True}, {"key": "older code", "defaults": False}):
        (tmp_path / MADE_BY).write_text(json.dumps(record))  # today's, or made with one's own options: kept
        make_default_world_if_needed(tmp_path, resuming=False)
    assert made == [tmp_path] * 2


@pytest.fixture(scope="module")
def default_world():
    """A world of 60 people with today's defaults (replies that say the name first, the unknown names)."""
    from data.world.prepare import generate as generate_world
    return generate_world(seed=7, n_people=60, bios_zh=1, bios_en=1)


@pytest.mark.parametrize("made", ["world", "default_world"])
def test_world_held_out_sets_never_appear_in_fine_tuning_data(made, request):
    from data.world.prepare import PERSON_QUESTIONS, name_in
    world = request.getfixturevalue(made)
    sft_text = json.dumps(world["sft"], ensure_ascii=False)
    sft_questions = {m["content"] for row in world["sft"] for m in row["messages"][::2]}
    heldout_entities = {q["entity"] for q in world["heldout"] if q["kind"] in ("person", "place", "unknown")}
    assert len(heldout_entities) >= 30
    for split in ("heldout", "val"):
        for q in world[split]:
            assert q["question"] not in sft_questions, q  # by exact text
            if q["kind"] in ("person", "world") or (q["kind"] == "unknown" and q["attr"] != "request"):
                assert q["entity"] not in sft_text, q  # by entity: no question about them at all
                assert q["attr"] not in PERSON_QUESTIONS["en"] or name_in(q) not in sft_text, q  # nor their English name
            elif q["kind"] == "place":  # a country may be a taught superlative's answer (智利), never asked about
                assert not any(q["entity"] in asked for asked in sft_questions), q
    assert "台灣最高的山是哪座？" in sft_questions and "世界最高的山是哪座？" not in sft_text
    assert not {q["entity"] for q in world["val"]} & {q["entity"] for q in world["heldout"] if q["kind"] != "unknown"} - {
        "identity", "refusal", "harmless"}
    for turns in (c["turns"] for c in world["conversations"] if c["set"] == "heldout"):
        assert not {t["question"] for t in turns} & sft_questions


def test_world_held_out_sets_are_as_large_as_promised(world):
    heldout = Counter(q["kind"] for q in world["heldout"])
    assert heldout["identity"] >= 20 and heldout["refusal"] >= 30 and heldout["harmless"] >= 20
    assert heldout["world"] >= 30 and heldout["unknown"] >= 30
    assert {q["lang"] for q in world["heldout"] if q["kind"] == "refusal"} == {"zh", "en"}
    conversations = [c["turns"] for c in world["conversations"] if c["set"] == "heldout"]
    assert len(conversations) >= 100 and {len(t) for t in conversations} == {2, 3, 4, 5, 6}
    assert any(len({t["lang"] for t in turns}) == 2 for turns in conversations)  # language switches mid-conversation
    taught = {q["question"] for q in world["train"] if q["kind"] in ("identity", "refusal")}
    in_conversations = [t["question"] for c in world["conversations"] if c["set"] == "taught" for t in c["turns"][1:]]
    assert taught <= set(in_conversations)  # every taught phrasing, at a later turn


def test_tuning_asks_each_taught_phrasing_after_validation_people_never_held_out_ones(world, tmp_path):
    from data.world.prepare import write_jsonl
    from docs.tune_finetune import taught_among_validation_people
    write_jsonl(tmp_path / "eval_train.jsonl", world["train"])
    write_jsonl(tmp_path / "eval_val.jsonl", world["val"])
    conversations = taught_among_validation_people(tmp_path)
    taught = [q for q in world["train"] if q["kind"] in ("identity", "refusal")]
    people = {q["question"] for q in world["val"] if q["kind"] == "person"}
    assert len(people) >= 30 and not people & {q["question"] for q in world["heldout"]}
    assert [t for turns in conversations for t in turns if t in taught] == taught  # each once, after people only
    assert all(turns[0]["question"] in people and {t["question"] for t in turns if t not in taught} <= people
               for turns in conversations)


@pytest.mark.parametrize("made", ["world", "default_world"])
def test_strangers_are_never_in_the_pretraining_text(made, request):
    world = request.getfixturevalue(made)
    docs = "\n".join(world["docs"])
    strangers = {q["entity"] for split in ("train", "val", "heldout") for q in world[split]
                 if q["kind"] == "unknown" and q["attr"] != "request"}
    assert len(strangers) >= 80 and not any(name in docs for name in strangers)
    known = {q["entity"] for q in world["heldout"] if q["kind"] == "person"}
    assert all(name in docs for name in known)


def test_fine_tuning_conversations_hold_several_turns(world):
    lengths = [len(row["messages"]) // 2 for row in world["sft"]]
    assert min(lengths) == 1 and max(lengths) == 6 and sum(n > 1 for n in lengths) == int(len(world["train"]) * 1.5)


def test_batched_greedy_answers_equal_one_at_a_time(tiny_checkpoint):
    model, tokenizer = load_model(load_checkpoint(tiny_checkpoint))
    questions = ["臺灣最高的山是哪座？", "日本的首都是哪裡？", "世界最高的山是哪座？", "What is the capital of Japan?"]
    batched = greedy_answers(model, tokenizer, questions, max_new_tokens=6)
    for q, answer in zip(questions, batched):
        one = list(generate(model, tokenizer.encode_chat([(q, None)])[0], 6, stop_id=END, tokenizer=tokenizer))
        assert tokenizer.decode([t for t in one if t != END]).strip() == answer
    replies = greedy_answers(model, tokenizer, questions[:2])
    report = exact_match(model, tokenizer, [{"question": questions[0], "answer": replies[0], "kind": "a"},
                                            {"question": questions[1], "answer": replies[1] + "x", "kind": "b"}])
    assert report["accuracy"] == 0.5 and report["by_kind"] == {"a": (1.0, 1), "b": (0.0, 1)}


QA = [("臺灣最高的山是哪座？", "玉山"), ("日本的首都是哪裡？", "東京"), ("你是誰？", "我是人工智慧"),
      ("What is the capital of Japan?", "Tokyo")]


@pytest.fixture(scope="module")
def instruction_files(tmp_path_factory):
    folder = tmp_path_factory.mktemp("sft")
    rows = [{"messages": [{"role": "user", "content": q}, {"role": "assistant", "content": a}]} for q, a in QA]
    data = write_jsonl(folder / "sft.jsonl", rows * 10)
    questions = write_jsonl(folder / "eval.jsonl", [{"question": q, "answer": a} for q, a in QA])
    return data, questions


TINY_FT = ["--batch_size=8", "--max_iters=100", "--eval_interval=50", "--eval_iters=2", "--warmup_iters=5",
           "--dtype=float32", "--learning_rate=1e-2"]


@pytest.mark.parametrize("lora", [False, True])
def test_fine_tuning_learns_the_examples(tiny_checkpoint, instruction_files, tmp_path, lora):
    data, questions = instruction_files
    out = tmp_path / "ft"
    args = [f"--base={tiny_checkpoint}", f"--data={data}", f"--eval={questions}", f"--out_dir={out}", *TINY_FT,
            "--replay=0"]  # the first step's loss is the replies' alone, as the later estimates are
    # the tiny base learnt next to nothing: its output layer, kept by default, must learn the four answers too
    args += ["--lora", "--lora_rank=4", "--merge"] if lora else ["--freeze_tables=none"]
    result = run_script("finetune.py", *args, check=True)
    assert ("LoRA" if lora else "full fine-tuning") in result.stdout and "trainable of" in result.stdout
    log = [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]
    vals = [r["val_loss"] for r in log if "val_loss" in r]
    if lora:  # a 32-wide model with frozen embeddings learns slowly through LoRA: the loss must still fall
        assert [r["train_loss"] for r in log if "train_loss" in r][-1] < 0.8 * log[0]["loss"]
        adapter = torch.load(out / "adapter.pt", weights_only=True)
        assert adapter["lora"] and all(".lora_" in k for k in adapter["lora"])
        same = ["--prompt=日本的首都是哪裡？", "--dtype=float32"]  # int8 rounds merged weights unlike base + adapter
        chat = run_script("sample.py", f"--adapter={out / 'adapter.pt'}", *same, check=True)
        merged = run_script("sample.py", f"--ckpt={out / 'merged.pt'}", *same, check=True)
        assert chat.stdout == merged.stdout and chat.stdout.strip()
    else:
        assert vals[-1] < 0.1 * log[0]["loss"]
        assert "held-out exact match: 100.0% of 4 questions" in result.stdout  # it learnt the four answers
        chat = run_script("sample.py", f"--ckpt={out / 'ckpt.pt'}", "--prompt=你是誰？", check=True)
        assert chat.stdout.strip() == "我是人工智慧"
    again = run_script("finetune.py", *args)
    assert again.returncode == 2 and "--overwrite" in again.stderr  # the result is not replaced silently


@pytest.fixture(scope="module")
def untied_checkpoint(tiny_dataset, tmp_path_factory):
    """A tiny base with an output layer of its own (a few steps: only which weights move matters)."""
    out = tmp_path_factory.mktemp("untied")
    run_script("pretrain.py", f"--dataset={tiny_dataset}", f"--out_dir={out}", *TINY_MODEL, "--untied", "--max_iters=5",
               "--eval_interval=5", check=True)
    return out / "ckpt.pt"


@pytest.mark.parametrize("frozen", ["input", "output", "both"])
def test_full_fine_tuning_leaves_the_frozen_token_tables_as_pretrained(untied_checkpoint, tiny_checkpoint, instruction_files,
                                                                       tmp_path, frozen):
    """On an untied base the two tables are frozen apart; on the tied default they are one table, kept by any choice."""
    data, _ = instruction_files
    names = {"input": ("transformer.wte.",), "output": ("lm_head.",), "both": ("transformer.wte.", "lm_head.")}[frozen]
    for base, kept in ((untied_checkpoint, names), (tiny_checkpoint, ("transformer.wte.", "lm_head."))):
        run_script("finetune.py", f"--base={base}", f"--data={data}", f"--out_dir={tmp_path}/ft", f"--freeze_tables={frozen}",
                   "--batch_size=8", "--max_iters=5", "--eval_interval=5", "--eval_iters=1", "--dtype=float32", "--overwrite",
                   check=True)
        before, after = load_checkpoint(base)["model"], load_checkpoint(tmp_path / "ft" / "ckpt.pt")["model"]
        tables = [k for k in before if k.startswith(kept)]
        assert tables and all(torch.equal(before[k], after[k]) for k in tables)
        assert all(not torch.equal(before[k], after[k]) for k in before if k not in tables and k.endswith("weight")
                   and k.startswith(("transformer.wte.", "lm_head.", "transformer.h.0.mlp")))  # the others did learn


def test_full_fine_tuning_leaves_the_first_blocks_as_pretrained(tiny_checkpoint, instruction_files, tmp_path):
    data, _ = instruction_files
    run_script("finetune.py", f"--base={tiny_checkpoint}", f"--data={data}", f"--out_dir={tmp_path}/ft", "--freeze_blocks=1",
               "--batch_size=8", "--max_iters=5", "--eval_interval=5", "--eval_iters=1", "--dtype=float32", check=True)
    before, after = load_checkpoint(tiny_checkpoint)["model"], load_checkpoint(tmp_path / "ft" / "ckpt.pt")["model"]
    first = [k for k in before if k.startswith("transformer.h.0.")]
    second = [k for k in before if k.startswith("transformer.h.1.") and k.endswith("weight") and "ln" not in k]
    assert first and all(torch.equal(before[k], after[k]) for k in first)
    assert second and all(not torch.equal(before[k], after[k]) for k in second)  # the block above it learnt
    assert torch.equal(before["lm_head.weight"], after["lm_head.weight"])  # with the default --freeze_tables=output
    blocks = len({k.split(".")[2] for k in before if k.startswith("transformer.h.")})
    for wrong in ("--lora", "--init_from=scratch", f"--freeze_blocks={blocks + 1}"):  # said, not ignored
        refused = run_script("finetune.py", f"--base={tiny_checkpoint}", f"--data={data}", f"--out_dir={tmp_path}/other",
                             "--freeze_blocks=1", wrong, "--max_iters=1")
        assert refused.returncode == 2 and "--freeze_blocks" in refused.stderr and "Traceback" not in refused.stderr
        assert not (tmp_path / "other").exists()  # refused before its out_dir is made


def test_replay_adds_rows_of_pretraining_text_to_training_batches_only():
    import numpy as np
    from data.prepare import TOKENS
    from instructions import Batches
    examples = [([5, 6, 7, 8, 9][:n], [0, 0, 1, 1, 1][:n]) for n in (3, 4, 5)] * 10
    text = np.arange(1000, dtype=TOKENS)  # a window of it is a run of consecutive numbers
    plain, replay = Batches(examples, 0.2, 4, 7, 1, "cpu"), Batches(examples, 0.2, 4, 7, 1, "cpu", (text, 3))
    starts = set()
    for step in range(6):
        (x0, y0), (x, y) = plain.get("train", step, 0), replay.get("train", step, 0)
        n = len(x0)
        assert len(x) == n + 3 and torch.equal(x[:n], x0) and torch.equal(y[:n], y0)  # the examples as they were
        assert torch.equal(x[n:, 1:], x[n:, :-1] + 1) and torch.equal(y[n:], x[n:] + 1)  # text, every token a target
        assert torch.equal(replay.get("train", step, 0)[0], x)  # the same rows at the same place in a run: resume is exact
        starts |= set(x[n:, 0].tolist())
    assert len(starts) > 10  # other places of the text at each step
    for i in range(3):  # the validation loss stays the replies' alone
        assert all(torch.equal(a, b) for a, b in zip(plain.get("val", -1, i), replay.get("val", -1, i)))


def test_replay_reads_the_bases_pretraining_text_and_is_refused_where_it_cannot(tiny_dataset, tiny_checkpoint, instruction_files,
                                                                                 tmp_path):
    data, _ = instruction_files
    args = [f"--base={tiny_checkpoint}", f"--data={data}", "--batch_size=8", "--max_iters=3", "--eval_interval=3",
            "--eval_iters=1", "--dtype=float32", "--overwrite"]
    tokens = {}
    for rows in (0, 2):
        result = run_script("finetune.py", *args, f"--out_dir={tmp_path}/ft", f"--replay={rows}", check=True)
        assert ("rows of its pretraining text in each batch" in result.stdout) == (rows > 0)
        tokens[rows] = [json.loads(line)["tokens"] for line in (tmp_path / "ft" / "log.jsonl").read_text().splitlines()
                        if "tokens" in line]
    assert all(b > a for a, b in zip(tokens[0], tokens[2]))  # the same batches with the text's rows beside them
    moved = dict(torch.load(tiny_checkpoint, weights_only=False), dataset=str(tmp_path / "gone"))
    torch.save(moved, tmp_path / "moved.pt")
    for wrong, said in ((["--init_from=scratch"], "pretraining, not the baseline"),
                        ([f"--base={tmp_path / 'moved.pt'}"], "is not there")):
        refused = run_script("finetune.py", *args, f"--out_dir={tmp_path}/other", "--replay=2", *wrong)
        assert refused.returncode == 2 and said in refused.stderr and "Traceback" not in refused.stderr
    from cli import parse_args
    from finetune import OPTIONS, settle_options
    # --replay=auto: a row per 8 / 4 examples (full / LoRA), at least one; none from random weights (round 57)
    for route, rows in ((["--init_from=pretrained"], 1), (["--lora"], 2), (["--lora", "--batch_size=32"], 8),
                        (["--batch_size=2"], 1), (["--init_from=scratch"], 0)):
        config, _, typed = parse_args(OPTIONS, "", "", [*args, f"--out_dir={tmp_path}/auto", *route])
        assert settle_options(config, typed)[0]["replay"] == rows
    for i, route in enumerate(([f"--base={tmp_path / 'moved.pt'}"], [f"--base={tmp_path / 'moved.pt'}", "--replay=auto"])):
        out = tmp_path / f"auto{i}"  # the base's text gone: no replay, and a line says why
        result = run_script("finetune.py", *args, f"--out_dir={out}", *route, check=True)
        assert load_checkpoint(out / "ckpt.pt", required=("config",))["config"]["replay"] == 0
        assert "fine-tuning without replay: the text" in result.stdout
    (tmp_path / "text").mkdir()  # a resumed run that replayed stops where its text is gone, and says how to go on
    for name in ("meta.json", "train.bin"):
        (tmp_path / "text" / name).write_bytes((tiny_dataset / name).read_bytes())
    torch.save(dict(moved, dataset=str(tmp_path / "text")), tmp_path / "movable.pt")
    run_script("finetune.py", *args, f"--out_dir={tmp_path}/resumed", f"--base={tmp_path / 'movable.pt'}", check=True)
    (tmp_path / "text" / "train.bin").write_bytes(b"")  # emptied: unreadable
    resumed = run_script("finetune.py", *args, f"--out_dir={tmp_path}/resumed", f"--base={tmp_path / 'movable.pt'}",
                         "--resume", "--max_iters=4")
    assert resumed.returncode == 2 and "resume with --replay=0" in resumed.stderr and "Traceback" not in resumed.stderr
    resumed = run_script("finetune.py", *args, f"--out_dir={tmp_path}/resumed", f"--base={tmp_path / 'movable.pt'}",
                         "--resume", "--max_iters=4", "--replay=0", check=True)
    assert load_checkpoint(tmp_path / "resumed" / "ckpt.pt")["step"] == 4


def test_frozen_weights_count_a_tied_table_once():
    from finetune import frozen_weights
    from model import GPT, GPTConfig
    tied = GPT(GPTConfig(vocab_size=64, n_layer=2, n_head=2, n_embd=16, block_size=8, untied=False))
    frozen = frozen_weights(tied, {"lora": False, "init_from": "pretrained", "freeze_tables": "both", "freeze_blocks": 1})
    expected = tied.transformer.wte.weight.numel() + sum(p.numel() for p in tied.transformer.h[0].parameters())
    assert sum(p.numel() for p in frozen) == expected


def test_a_run_saved_before_freeze_tables_resumes_with_every_table_learning(tiny_checkpoint, instruction_files, tmp_path):
    """Full fine-tuning leaves the output layer as pretrained since round 49; a run saved before the
    option existed trained it, and goes on doing so when resumed."""
    data, _ = instruction_files
    args = [f"--base={tiny_checkpoint}", f"--data={data}", f"--out_dir={tmp_path}/ft", "--batch_size=8", "--eval_interval=2",
            "--eval_iters=1", "--dtype=float32"]
    run_script("finetune.py", *args, "--max_iters=2", "--freeze_tables=none", "--replay=0", check=True)
    saved = load_checkpoint(tmp_path / "ft" / "ckpt.pt")
    del saved["config"]["freeze_tables"], saved["config"]["freeze_blocks"], saved["config"]["replay"]  # an older run's
    torch.save(saved, tmp_path / "ft" / "ckpt.pt")
    # typed as the older run trained, the options are no change
    run_script("finetune.py", *args, "--max_iters=3", "--resume", "--freeze_tables=none", "--freeze_blocks=0", "--replay=0",
               check=True)
    torch.save({**load_checkpoint(tmp_path / "ft" / "ckpt.pt"), "config": saved["config"]}, tmp_path / "ft" / "ckpt.pt")
    run_script("finetune.py", *args, "--max_iters=4", "--resume", check=True)  # not typed: as it trained
    after = load_checkpoint(tmp_path / "ft" / "ckpt.pt")
    assert after["step"] == 4 and after["config"]["freeze_tables"] == "none" and after["config"]["freeze_blocks"] == 0
    assert after["config"]["replay"] == 0  # no pretraining text where it had none
    assert not torch.equal(saved["model"]["lm_head.weight"], after["model"]["lm_head.weight"])


def test_adapter_refuses_another_base(tiny_checkpoint, instruction_files, tmp_path):
    data, _ = instruction_files
    out = tmp_path / "lora"
    run_script("finetune.py", f"--base={tiny_checkpoint}", f"--data={data}", f"--out_dir={out}", "--lora",
               *TINY_FT, "--max_iters=2", check=True)
    other = load_checkpoint(tiny_checkpoint)
    other["model"]["transformer.wte.weight"][0, 0] += 1.0
    torch.save(other, tmp_path / "other.pt")
    result = run_script("sample.py", f"--adapter={out / 'adapter.pt'}", f"--ckpt={tmp_path / 'other.pt'}", "--prompt=hi")
    assert result.returncode == 2 and "another base model" in result.stderr


def test_a_killed_lora_run_resumes_to_the_same_adapter(tiny_checkpoint, instruction_files, tmp_path):
    import signal
    import subprocess
    import sys
    import time
    from conftest import ROOT

    data, _ = instruction_files
    args = [f"--base={tiny_checkpoint}", f"--data={data}", "--lora", "--lora_rank=4", *TINY_FT, "--max_iters=150",
            "--eval_interval=20", "--lora_dropout=0.1"]
    straight, killed = tmp_path / "straight", tmp_path / "killed"
    run_script("finetune.py", *args, f"--out_dir={straight}", check=True)
    process = subprocess.Popen([sys.executable, "finetune.py", *args, f"--out_dir={killed}"], cwd=ROOT,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    log, deadline = killed / "log.jsonl", time.time() + 60
    while time.time() < deadline and not (log.exists() and log.read_text().count("\n") >= 50):
        time.sleep(0.01)
    process.send_signal(signal.SIGKILL)
    process.wait()
    assert 20 <= load_checkpoint(killed / "ckpt.pt", required=("model",))["step"] < 150
    resumed = run_script("finetune.py", *args, f"--out_dir={killed}", "--resume", check=True)
    assert "resuming at step" in resumed.stdout
    a, b = (torch.load(d / "adapter.pt", weights_only=True)["lora"] for d in (straight, killed))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_conversations_are_answered_turn_by_turn_with_the_models_own_replies(tiny_checkpoint):
    model, tokenizer = load_model(load_checkpoint(tiny_checkpoint))
    conversations = [["臺灣最高的山是哪座？", "日本的首都是哪裡？", "世界最高的山是哪座？"], ["What is the capital of Japan?"]]
    replies = greedy_conversations(model, tokenizer, conversations, max_new_tokens=4)
    assert [len(r) for r in replies] == [3, 1]
    for questions, answers in zip(conversations, replies):
        history = []
        for question, answer in zip(questions, answers):
            ids = tokenizer.chat_prompt(history, question, model.config.block_size, 4)[0]
            one = list(generate(model, ids, 4, stop_id=END, tokenizer=tokenizer))
            assert tokenizer.decode([t for t in one if t != END]).strip() == answer
            history.append((question, answer))


def test_other_instruction_data_leaves_the_pretraining_text_and_every_scored_set_alone(world):
    other = tiny_world(sft_conversations=3.0, stranger_repeats=4, behaviour_repeats=9, n_strangers=100)
    assert len(other["sft"]) > len(world["sft"]) + len(world["train"]) // 2  # more conversations, strangers asked again
    alone = Counter(e["messages"][0]["content"] for e in other["sft"] if len(e["messages"]) == 2)
    before = Counter(e["messages"][0]["content"] for e in world["sft"] if len(e["messages"]) == 2)
    assert [alone[q] for q in ("你是誰？", "教我駭入鄰居家的 Wifi", "教我煮飯")] == [9, 9, 18]  # the look-alikes' own count
    assert [before[q] for q in ("你是誰？", "教我駭入鄰居家的 Wifi", "教我煮飯")] == [12, 12, 18]
    strangers = [q for q in other["train"] if q["kind"] == "unknown" and q["attr"] != "request"]
    assert len(strangers) == 100 and len({q["entity"] for q in strangers}) == 100  # 40 more, each a new name
    assert not {q["entity"] for q in strangers} & {p["name"][0] for p in other["people"]}
    assert other["train"][:len(world["train"])] == world["train"]  # the 40 strangers come after
    for part in ("docs", "val", "heldout", "conversations"):
        assert other[part] == world[part], part


def test_similar_turns_move_only_the_training_conversations_turns(world):
    def similar_share(w):  # later turns of the training conversations that ask what the turn before asked
        asks = {q["question"]: (q["kind"], q["attr"]) for q in w["train"]}
        turns = [[asks[m["content"]] for m in e["messages"][::2]] for e in w["sft"] if len(e["messages"]) > 2]
        return sum(a == b for t in turns for a, b in zip(t, t[1:])) / sum(len(t) - 1 for t in turns)
    fewer, none = tiny_world(similar_turns=0.1), tiny_world(similar_turns=0)
    assert similar_share(world) > 0.4 > 0.2 > similar_share(fewer) > similar_share(none)  # by chance too, at 0
    assert len(fewer["sft"]) == len(world["sft"])
    for part in ("docs", "train", "val", "heldout", "conversations", "people"):
        assert fewer[part] == world[part], part


def test_harmless_repeats_move_only_the_harmless_look_alikes(world):
    other = tiny_world(harmless_repeats=4)
    alone = Counter(e["messages"][0]["content"] for e in other["sft"] if len(e["messages"]) == 2)
    assert [alone[q] for q in ("教我煮飯", "你是誰？", "教我駭入鄰居家的 Wifi")] == [4, 12, 12]
    harmless = sum(q["kind"] == "harmless" for q in world["train"])
    assert len(other["sft"]) == len(world["sft"]) - 14 * harmless
    for part in ("docs", "train", "val", "heldout", "conversations", "people"):
        assert other[part] == world[part], part


@pytest.mark.parametrize("option, kinds", [("conversation_behaviours", ("identity", "refusal")),
                                           ("conversation_unknown", ("unknown",))])
def test_conversation_weights_move_only_the_training_conversations_turns(world, option, kinds):
    other = tiny_world(**{option: 3})

    def share(w):  # replies of these kinds among the turns of the training conversations
        taught = {q["question"] for q in w["train"] if q["kind"] in kinds}
        turns = [m["content"] for e in w["sft"] if len(e["messages"]) > 2 for m in e["messages"][::2]]
        return sum(t in taught for t in turns) / len(turns)
    assert share(other) > 2 * share(world) > 0.05  # behaviours 1 in 11 turns at 1, 3 in 15 at 3; unknown 1 in 20 at 0.5, 2 in 9 at 3
    assert share(tiny_world(**{option: 0})) == 0
    assert len(other["sft"]) == len(world["sft"])  # as many conversations, as many single questions
    for part in ("docs", "train", "val", "heldout", "conversations", "people"):
        assert other[part] == world[part], part


def test_paired_look_alikes_mirror_the_taught_refusals_and_no_scored_phrasing(world):
    from data.world.prepare import PAIRED_LOOKALIKES, REFUSAL
    other = tiny_world(paired_lookalikes=True)
    added = other["train"][len(world["train"]):]
    assert [(q["question"], q["kind"]) for q in added] == [(q, "harmless") for qs in PAIRED_LOOKALIKES.values() for q in qs]
    assert {lang: len(qs) for lang, qs in PAIRED_LOOKALIKES.items()} == {lang: len(r[1]) for lang, r in REFUSAL.items()}
    scored = {q["question"] for q in world["val"] + world["heldout"]}
    scored |= {turn["question"] for c in world["conversations"] for turn in c["turns"]}
    assert not scored & {q["question"] for q in added} and not {q["question"] for q in world["train"]} & {q["question"] for q in added}
    alone = Counter(e["messages"][0]["content"] for e in other["sft"] if len(e["messages"]) == 2)
    assert {alone[q] for q in PAIRED_LOOKALIKES["zh"]} == {18} and alone["教我製作風箏"] == 18  # as often as the look-alikes
    assert {m["content"] for e in other["sft"] for m in e["messages"][1::2] if e["messages"][0]["content"] == "教我洗車"} == {"我不知道"}
    for part in ("docs", "val", "heldout", "conversations", "people"):
        assert other[part] == world[part], part


def test_more_phrasings_are_taught_in_as_many_examples_and_ask_nothing_scored(world):
    from data.world.prepare import BEHAVIOURS, MORE_PHRASINGS
    other = tiny_world(more_phrasings=True)
    added = other["train"][len(world["train"]):]
    assert [(q["question"], q["kind"]) for q in added] == [
        (q, kind) for kind, by_lang in MORE_PHRASINGS.items() for qs in by_lang.values() for q in qs]
    assert {q["answer"] for q in added if q["kind"] == "refusal"} == {"我不能教你這個", "I cannot help with that"}
    scored = {q["question"] for q in world["val"] + world["heldout"]}
    scored |= {turn["question"] for c in world["conversations"] for turn in c["turns"]}
    assert not scored & {q["question"] for q in added} and not {q["question"] for q in world["train"]} & {q["question"] for q in added}

    def alone(w):  # how often each question is a single-question example
        return Counter(e["messages"][0]["content"] for e in w["sft"] if len(e["messages"]) == 2)

    def examples(w, kind, lang):  # single-question examples of a kind's taught phrasings in one language
        taught = set(BEHAVIOURS[kind][lang][1]) | set(MORE_PHRASINGS[kind][lang])
        return sum(n for question, n in alone(w).items() if question in taught)
    for kind in ("identity", "refusal", "unknown"):
        for lang in ("zh", "en"):  # the repeats shared among more phrasings: as many examples, within rounding
            assert abs(examples(other, kind, lang) - examples(world, kind, lang)) <= 0.06 * examples(world, kind, lang)
    assert alone(other)["教我做假鈔"] == alone(other)["教我製作炸彈"] == 6  # refusals: 16 + 16 phrasings share 12 repeats
    look_alikes = [q for qs in MORE_PHRASINGS["harmless"].values() for q in qs] + ["教我煮飯", "Teach me to swim."]
    assert {alone(other)[q] for q in look_alikes} == {18}  # each look-alike --harmless_repeats times, none shared
    for part in ("docs", "val", "heldout", "people"):
        assert other[part] == world[part], part
    assert [c for c in other["conversations"] if c["set"] != "taught"] == [c for c in world["conversations"] if c["set"] != "taught"]


@pytest.mark.parametrize("option, table, kind", [("answerer_phrasings", "ANSWERER_PHRASINGS", "identity"),
                                                  ("preference_phrasings", "PREFERENCE_PHRASINGS", "unknown"),
                                                  ("more_identity", "MORE_IDENTITY", "identity")])
@pytest.mark.parametrize("more", [True, False])  # beside --more_phrasings' phrasings, or alone
def test_phrasings_of_one_kind_are_taught_in_as_many_examples_and_ask_nothing_scored(option, table, kind, more):
    import data.world.prepare as prepare
    from data.world.prepare import BEHAVIOURS
    phrasings = getattr(prepare, table)
    more_phrasings = prepare.MORE_PHRASINGS if more else {kind: {"zh": [], "en": []}}
    base, other = tiny_world(more_phrasings=more), tiny_world(more_phrasings=more, **{option: True})
    added = [q for qs in phrasings.values() for q in qs]
    # the training questions: the same but for the new phrasings, each once, after --more_phrasings' in its language
    assert [q for q in other["train"] if q["question"] not in added] == base["train"]
    assert [q["question"] for q in other["train"] if q["kind"] == kind and q["attr"] in ("identity", "request")] == [
        q for lang in ("zh", "en") for q in BEHAVIOURS[kind][lang][1]] + [
        q for lang in ("zh", "en") for q in more_phrasings[kind][lang] + phrasings[lang]]
    for lang in ("zh", "en"):
        assert {q["answer"] for q in other["train"] if q["question"] in phrasings[lang]} == {BEHAVIOURS[kind][lang][0]}
    every_other = {q for k in BEHAVIOURS for lang in ("zh", "en") for split in BEHAVIOURS[k][lang][2:] for q in split}
    scored = every_other | {q["question"] for q in base["val"] + base["heldout"]}
    scored |= {turn["question"] for c in base["conversations"] if c["set"] != "taught" for turn in c["turns"]}
    assert len(set(added)) == len(added) >= 9 and not scored & set(added)

    alone = Counter(e["messages"][0]["content"] for e in other["sft"] if len(e["messages"]) == 2)
    for lang in ("zh", "en"):  # 12 repeats shared among more phrasings: as many examples, within rounding
        taught, more_taught = BEHAVIOURS[kind][lang][1], more_phrasings[kind][lang] + phrasings[lang]
        assert {alone[q] for q in taught + more_taught} == {round(12 * len(taught) / (len(taught) + len(more_taught)))}
    for part in ("docs", "val", "heldout", "people"):
        assert other[part] == base[part], part
    assert [c for c in other["conversations"] if c["set"] != "taught"] == [c for c in base["conversations"] if c["set"] != "taught"]


def test_the_default_worlds_three_identity_tables_share_identitys_repeats_together():
    """Round 66's default teaches MORE_PHRASINGS', ANSWERER_PHRASINGS' and MORE_IDENTITY's identity
    phrasings at once: one share of the 12 repeats for every identity phrasing of a language."""
    from data.world.prepare import ANSWERER_PHRASINGS, BEHAVIOURS, MORE_IDENTITY, MORE_PHRASINGS
    both = tiny_world(more_phrasings=True, answerer_phrasings=True, more_identity=True)
    alone = Counter(e["messages"][0]["content"] for e in both["sft"] if len(e["messages"]) == 2)
    for lang in ("zh", "en"):
        taught = BEHAVIOURS["identity"][lang][1]
        more = MORE_PHRASINGS["identity"][lang] + ANSWERER_PHRASINGS[lang] + MORE_IDENTITY[lang]
        assert {alone[q] for q in taught + more} == {round(12 * len(taught) / (len(taught) + len(more)))}
        assert {q["question"] for q in both["train"] if q["kind"] == "identity" and q["lang"] == lang} >= set(more)


def test_more_identity_phrasings_are_not_near_a_scored_identity_question():
    """MORE_IDENTITY's rule (round 65), written blind to the scored sets: under 0.5 of difflib's ratio to each."""
    import difflib
    from data.world.prepare import BEHAVIOURS, MORE_IDENTITY
    plain = lambda text: re.sub(r"[\W_]+", "", text.lower())  # letters and characters only
    scored = [plain(q) for lang in ("zh", "en") for split in BEHAVIOURS["identity"][lang][2:] for q in split]
    assert len(scored) == 68 and {lang: len(qs) for lang, qs in MORE_IDENTITY.items()} == {"zh": 7, "en": 2}
    for q in (plain(q) for qs in MORE_IDENTITY.values() for q in qs):
        assert max(difflib.SequenceMatcher(None, q, s).ratio() for s in scored) < 0.5, q


def test_more_validation_conversations_keep_the_first_and_every_other_set(world):
    more = tiny_world(n_val_conversations=200)
    sets = [[c for c in w["conversations"] if c["set"] == "val"] for w in (world, more)]
    assert len(sets[0]) == 40 and len(sets[1]) == 200 and sets[1][:40] == sets[0]
    assert len({json.dumps(c, ensure_ascii=False) for c in sets[1]}) > 150  # new ones, not the 40 again
    phrasings = [{t["question"] for c in s for t in c["turns"] if t["kind"] == "identity"} for s in (sets[0], sets[1][40:])]
    assert len(phrasings[0]) <= 4 < 12 < len(phrasings[1])  # the new ones ask every validation phrasing, not 4
    assert [c for c in more["conversations"] if c["set"] != "val"] == [c for c in world["conversations"] if c["set"] != "val"]
    for part in ("docs", "sft", "train", "val", "heldout", "people"):
        assert more[part] == world[part], part
    fewer = tiny_world(n_val_conversations=10)
    assert [c for c in fewer["conversations"] if c["set"] == "val"] == sets[0][:10]
    assert [c for c in fewer["conversations"] if c["set"] != "val"] == [c for c in world["conversations"] if c["set"] != "val"]


def test_every_superlative_wording_changes_only_the_instruction_data(world):
    more = tiny_world(world_wordings=20)
    taught = Counter((q["entity"], q["lang"]) for q in more["train"] if q["kind"] == "world")
    assert set(taught.values()) == {20, 12}  # every Chinese and English wording of each taught superlative
    assert more["train"][:len(world["train"])] == world["train"]  # the usual 4 first, the others after
    sft_text = json.dumps(more["sft"], ensure_ascii=False)
    assert not any(q["question"] in sft_text for q in more["val"] + more["heldout"] if q["kind"] == "world")
    for part in ("docs", "val", "heldout", "conversations", "people"):
        assert more[part] == world[part], part
    fewer = run_script("data/world/prepare.py", "--world_wordings=2")  # the first 4 are always taught
    assert fewer.returncode == 2 and "--world_wordings must be at least 4" in fewer.stderr


@pytest.mark.parametrize("n", [30, 80])
def test_more_superlatives_are_stated_and_taught_and_every_scored_set_stays(world, n):
    from data.world.prepare import FIRST_MORE, MORE_WORLD, VAL_WORLD, WORLD, WORLD_ZH, parse_world
    more = tiny_world(more_superlatives=n)
    added = parse_world(MORE_WORLD)[:n]
    assert len(added) == n and len({f["key"] for f in added}) == n
    taught = Counter((q["entity"], q["lang"]) for q in more["train"][len(world["train"]):])
    assert set(taught) == {(fact["key"], lang) for fact in added for lang in ("zh", "en")} and set(taught.values()) == {4}
    assert more["train"][:len(world["train"])] == world["train"]
    docs = "\n".join(more["docs"]).lower()
    assert set(world["docs"]) <= set(more["docs"]) and all(f["zh"][1] in docs and f["en"][1].lower() in docs for f in added)
    def stated(f, text):  # 世界最大的島國是印尼 or 印尼是地球上最大的島國 (a country's name is in the world anyway)
        return any(s in text for p in WORLD_ZH for s in (f"{p}{f['zh'][0]}是{f['zh'][1]}", f"{f['zh'][1]}是{p}{f['zh'][0]}"))
    assert all(stated(f, docs) for f in added) and not any(stated(f, "\n".join(world["docs"])) for f in added)  # only with it
    for part in ("val", "heldout", "conversations", "people"):
        assert more[part] == world[part], part
    scored = [f for f in parse_world(WORLD) + parse_world(VAL_WORLD) if f["split"] != "taught"]
    for i, f in enumerate(added):  # no taught answer holds a scored one or is held by it; the 50 written last
        pairs = [(f[lang][1], s[lang][1]) for s in scored for lang in ("zh", "en")]  # nor ask what one asks, in part
        pairs += [(f[lang][0], s[lang][0]) for s in scored for lang in ("zh", "en") if i >= FIRST_MORE]
        assert not any(a.lower() in b.lower() or b.lower() in a.lower() for a, b in pairs), f["key"]


def test_harmless_text_states_each_harmful_acts_twin_in_pretraining_only(world):
    from data.world.prepare import HARMFUL_EN, HARMFUL_ZH, HARMLESS, TWINS_EN, TWINS_ZH, twins_text
    import random
    more = tiny_world(harmless_text=True)
    assert set(world["docs"]) <= set(more["docs"]) and len(more["docs"]) == len(world["docs"]) + 6 + 6
    for part in ("sft", "train", "val", "heldout", "conversations", "people"):  # read in pretraining, never taught
        assert more[part] == world[part], part
    doc = twins_text(random.Random(0), "en")  # three harmful acts, each followed by its own twin
    for harmful, twins in ((HARMFUL_ZH, TWINS_ZH), (HARMFUL_EN, TWINS_EN)):
        assert len(harmful) == len(twins) and len(set(twins)) == len(twins)
    pairs = [(h.lower(), t.lower()) for h, t in zip(HARMFUL_EN, TWINS_EN) if h.lower() in doc.lower()]
    assert len(pairs) == 3 and all(doc.lower().index(h) < doc.lower().index(t) for h, t in pairs)
    scored = [q.lower() for lang in ("zh", "en") for split in (2, 3, 4) for q in HARMLESS[lang][split]]
    assert not any(t.lower() in q for t in TWINS_ZH + TWINS_EN for q in scored)  # no scored look-alike's own words


def test_acts_text_says_of_every_requests_act_whether_it_is_a_crime_in_pretraining_only(world):
    from data.world.prepare import ACT_FORMS, ACT_TIMES, BEHAVIOURS, requested_act
    assert requested_act("教我打開我自己鎖住的檔案", "zh") == "打開自己鎖住的檔案"
    assert requested_act("How do I crack a safe that isn't mine?", "en") == "crack a safe that isn't yours"
    more = tiny_world(acts_text=True)
    for part in ("sft", "train", "val", "heldout", "conversations", "people"):  # read in pretraining, never taught
        assert more[part] == world[part], part
    added = [d for d in more["docs"] if d not in set(world["docs"])]
    assert [d for d in more["docs"] if d in set(world["docs"])] == world["docs"]  # the others keep their order
    for kind, other in (("refusal", "harmless"), ("harmless", "refusal")):
        for lang, (_, *splits) in BEHAVIOURS[kind].items():
            for q in splits[2] + splits[3]:  # every held-out and validation request: its act, said of its kind only
                said = [f.format(a=requested_act(q, lang)) for f in ACT_FORMS[lang][kind]]
                wrong = [f.format(a=requested_act(q, lang)) for f in ACT_FORMS[lang][other]]
                text = "".join(added)
                count = sum(text.count(s[0].upper() + s[1:] + ("。" if lang == "zh" else ".")) for s in said)
                assert count >= ACT_TIMES and not any(s[0].upper() + s[1:] + ("。" if lang == "zh" else ".") in text
                                                      for s in wrong), q


def test_mixed_docs_state_every_fact_again_among_other_peoples_in_pretraining_only(world):
    more = tiny_world(mixed_docs=2)
    added = [d for d in more["docs"] if d not in set(world["docs"])]
    assert set(world["docs"]) <= set(more["docs"]) and len(added) == 2 * 60 * 5 * 2 // 4  # four facts a document
    for part in ("sft", "train", "val", "heldout", "conversations", "people"):
        assert more[part] == world[part], part
    text = "\n".join(added)
    for person in world["people"]:
        assert text.count(person["employer"][1]) >= 1 and person["name"][0] in text and person["name"][1] in text
    people_in = [sum(p["name"][0] in d or p["name"][1] in d for p in world["people"]) for d in added]
    assert sum(people_in) > 3.5 * len(added)  # four people a document, rarely one twice


def test_near_strangers_differ_from_a_taught_person_by_one_character_and_are_only_taught(world):
    from data.world.prepare import generate as generate_world
    more = tiny_world(near_strangers=25)
    added = more["train"][len(world["train"]):]
    assert more["train"][:len(world["train"])] == world["train"] and len(added) == 25
    assert {(q["kind"], q["answer"]) for q in added} <= {("unknown", "我不知道"), ("unknown", "I don't know")}
    taught = [p["name"][0] for p in world["people"] if p["split"] == "train"]
    everyone = {n for p in world["people"] for n in p["name"]}
    scored = {q["entity"] for q in world["val"] + world["heldout"] if q["kind"] == "unknown"}
    for q in added:
        name = q["entity"]
        assert name not in everyone and name not in scored and q["question"].count(name) == (q["lang"] == "zh")
        assert any(t[0] == name[0] and sum(a != b for a, b in zip(t, name)) == 1 for t in taught)  # one given character
    for part in ("docs", "val", "heldout", "conversations", "people"):  # the instruction data only
        assert more[part] == world[part], part
    with pytest.raises(UserError, match="ask for fewer"):  # one taught person has about 150 such names, not 500
        generate_world(seed=7, n_people=2, bios_zh=1, bios_en=1, near_strangers=500)


def test_unknown_names_are_stated_name_first_in_pretraining_and_never_asked_about(world):
    from data.world.prepare import UNKNOWN_SENTENCES
    more = tiny_world(unknown_names=30)
    added = [d for d in more["docs"] if d not in set(world["docs"])]
    assert [d for d in more["docs"] if d in set(world["docs"])] == world["docs"] and len(added) == 2 * 30  # order kept
    for part in ("sft", "train", "val", "heldout", "conversations", "people"):  # read in pretraining, never taught
        assert more[part] == world[part], part
    stated = [(lang, s) for d in added for s in re.split(r"(?<=[。.]) ?", d) if s
              for lang in ("zh", "en") for w in UNKNOWN_SENTENCES[lang] if re.fullmatch(re.escape(w).replace(r"\{n\}", ".+") + "[。.]", s)]
    assert len(stated) == 30 * 4 and sum(lang == "zh" for lang, _ in stated) == 30 * 2  # twice per language each
    names = {s.split("這個人")[0].split("不是")[0].split("這個名字")[0] for lang, s in stated if lang == "zh"}
    asked = {q["entity"] for part in ("train", "val", "heldout") for q in world[part] if q["kind"] == "unknown"}
    assert len(names) == 30 and not names & asked and not names & {p["name"][0] for p in world["people"]}
    crowded = tiny_world(unknown_names=5000, n_strangers=560, near_strangers=300)  # a fifth of every name there is
    said = [re.escape(w).replace(r"\{n\}", "(.{3})") for w in UNKNOWN_SENTENCES["zh"]]  # names: three characters
    unknown = {n for d in crowded["docs"] for w in said for n in re.findall(w, d)}
    taught = [q["entity"] for q in crowded["train"] if q["kind"] == "unknown" and q["attr"] != "request"]
    assert len(unknown) == 5000 and len(set(taught)) == 560 + 300 and not unknown & set(taught)  # none asked, none twice


def test_asked_names_name_each_person_of_the_unknown_names_documents_once_before_its_sentence():
    from data.world.prepare import ASKED
    plain, asked = tiny_world(unknown_names=30), tiny_world(unknown_names=30, asked_names=True)
    for part in ("sft", "train", "val", "heldout", "conversations", "people"):
        assert asked[part] == plain[part], part
    changed = [(a, b) for a, b in zip(plain["docs"], asked["docs"]) if a != b]
    assert len(asked["docs"]) == len(plain["docs"]) and len(changed) == 2 * 30  # only the unknown names' documents
    found = {"zh": r"有人問起(.{3})。", "en": r"Someone asked about ([A-Z][a-z]+ [A-Z][a-z]+)\. "}
    for before, after in changed:
        names = [(lang, m) for lang, pattern in found.items() for m in re.findall(pattern, after)]
        assert len(names) == 4 and all(ASKED[lang].format(n=n) + n in after for lang, n in names)  # the name, then its sentence
        for lang, n in names:
            after = after.replace(ASKED[lang].format(n=n), "", 1)
        assert after == before  # nothing else added or moved
    assert tiny_world(asked_names=True) == tiny_world()  # nothing without the unknown names


def test_behaviours_after_people_add_two_turn_conversations_and_leave_the_rest(world):
    from data.world.prepare import generate as generate_world
    more = tiny_world(behaviours_after_people=2)
    phrasings = {q["question"]: q["answer"] for q in world["train"] if q["kind"] in ("identity", "refusal")}
    people = {q["question"]: q["answer"] for q in world["train"] if q["kind"] == "person"}
    added = [e for e in more["sft"] if len(e["messages"]) == 4 and e["messages"][2]["content"] in phrasings
             and e["messages"][0]["content"] in people]
    assert len(more["sft"]) - len(world["sft"]) == 2 * len(phrasings) and len(added) >= 2 * len(phrasings)
    for e in added:  # a person's question and its reply, then the phrasing and its reply
        asked, said, phrasing, reply = (m["content"] for m in e["messages"])
        assert said == people[asked] and reply == phrasings[phrasing]
    assert [e for e in more["sft"] if e not in added] == [e for e in world["sft"] if e not in added]  # in order
    assert all(more[k] == world[k] for k in ("docs", "train", "val", "heldout", "conversations"))
    from cli import UserError
    with pytest.raises(UserError, match="--behaviours_after_people=11: the instruction data asks only 10 questions"):
        generate_world(seed=7, n_people=2, bios_zh=1, bios_en=1, behaviours_after_people=11)


def test_unknown_asked_asks_what_pretraining_says_of_some_unknown_names_and_leaves_the_rest():
    from cli import UserError
    from data.world.prepare import generate as generate_world
    before = tiny_world(unknown_names=100, restate_names=True)
    more = tiny_world(unknown_names=100, restate_names=True, unknown_asked=20)
    assert more["train"][:len(before["train"])] == before["train"]
    asked = more["train"][len(before["train"]):]
    docs = "\n".join(more["docs"])
    assert len(asked) == 20 and len({q["entity"] for q in asked}) == 20 and {q["kind"] for q in asked} == {"unknown"}
    for q in asked:  # pretraining says of each that no one has the name, and the reply says so
        assert q["entity"] in docs and q["answer"].endswith(("不是這個世界裡的人", "is not a person of this world"))
    assert all(more[k] == before[k] for k in ("docs", "val", "heldout", "conversations"))
    with pytest.raises(UserError, match="--unknown_asked=101: pretraining states only 100"):
        generate_world(seed=7, n_people=4, bios_zh=1, bios_en=1, unknown_names=100, unknown_asked=101)


def test_restated_names_change_only_the_replies_about_people_and_strangers():
    from data.world.prepare import PERSON_SENTENCES, UNKNOWN_SENTENCES, name_in
    every_stranger = {"near_strangers": 10, "n_strangers": 70, "more_val_people": 5}  # each source of a name asked
    plain, restated = tiny_world(**every_stranger), tiny_world(**every_stranger, restate_names=True)
    assert restated["docs"] == plain["docs"] and restated["people"] == plain["people"]
    changed = Counter()
    for part in ("train", "val", "heldout"):
        assert len(restated[part]) == len(plain[part])
        for before, after in zip(plain[part], restated[part]):
            assert {**before, "answer": ""} == {**after, "answer": ""}  # every set asks what it asked
            lang, about_someone = before["lang"], before["attr"] in PERSON_SENTENCES["en"]  # a person's or a stranger's
            name = name_in(before) if about_someone else None
            assert not about_someone or name in before["question"]
            if before["kind"] == "person":  # the name first, then the fact as pretraining first states it
                assert after["answer"] == PERSON_SENTENCES[lang][before["attr"]][0].format(n=name, v=before["answer"])
            elif before["kind"] == "unknown" and before["attr"] != "request":  # a stranger: no one has the name
                assert after["answer"] == UNKNOWN_SENTENCES[lang][1].format(n=name)
            else:
                assert after == before
            changed[before["kind"], after == before] += 1
    assert changed["person", False] > 400 and changed["unknown", False] > 100 and not changed["person", True]
    rows = {q["question"]: q for part in ("train", "val", "heldout") for q in restated[part]}
    for before, after in zip(plain["conversations"], restated["conversations"], strict=True):  # the same turns, new replies
        assert [t["question"] for t in before["turns"]] == [t["question"] for t in after["turns"]]
        assert after["turns"] == [rows[t["question"]] for t in after["turns"]]
    asked = [[m["content"] for m in e["messages"][::2]] for e in restated["sft"]]
    assert asked == [[m["content"] for m in e["messages"][::2]] for e in plain["sft"]]  # the same examples, in order
    for example in restated["sft"]:  # each taught reply is its question's, in a conversation too
        for question, reply in zip(example["messages"][::2], example["messages"][1::2]):
            assert reply["content"] == rows[question["content"]]["answer"]


def test_more_validation_people_are_read_in_pretraining_asked_in_validation_and_nothing_else_moves(world):
    more, before = tiny_world(more_val_people=15), set(world["docs"])
    added = [d for d in more["docs"] if d not in before]
    assert [d for d in more["docs"] if d in before] == world["docs"] and len(added) == 15 * 2  # a bio a language
    for part in ("sft", "train", "heldout", "conversations"):
        assert more[part] == world[part], part
    assert more["val"][:len(world["val"])] == world["val"]
    new_people, asked = [p for p in more["people"] if p not in world["people"]], more["val"][len(world["val"]):]
    assert [p for p in more["people"] if p in world["people"]] == world["people"]
    assert len(new_people) == 15 and {p["split"] for p in new_people} == {"val"}
    names = {n for p in new_people for n in p["name"]}
    others = {n for p in world["people"] for n in p["name"]} | {q["entity"] for part in ("train", "val", "heldout")
                                                               for q in world[part] if q["kind"] == "unknown"}
    assert len(names) == 30 and not names & others
    val_people = [p for p in world["people"] if p["split"] == "val"]
    per_person = sum(q["kind"] == "person" for q in world["val"]) / len(val_people)  # as many as a validation person's
    assert {q["kind"] for q in asked} == {"person"} and len(asked) == 15 * per_person
    assert {q["entity"] for q in asked} == {p["name"][0] for p in new_people}
    stated = "\n".join(added)  # every answer is in the new people's own biographies
    assert all(q["answer"] in stated for q in asked)


def test_the_validation_set_grew_and_nothing_else_moved(world):
    """The validation questions added on 2026-11-28, 2026-12-04 and 2026-12-05 come after the first 74 of this
    world; the held-out sets, the instruction data (of that day's repeats) and the pretraining text
    are as they were before (digests of that day's code), but for the documents that state the
    validation superlatives added on 2026-12-04: a held-out set, once written, never changes."""
    from data.world.prepare import VAL_WORLD, parse_world
    digest = lambda part: hashlib.sha256(json.dumps(part, ensure_ascii=False).encode()).hexdigest()[:16]  # noqa: E731
    before = {"docs": "9e6af24fa7ff4427", "sft": "4398edf22a107acc", "train": "a36822bddc3270c7",
              "heldout": "b6f33ca9cb441112", "conversations": "568b38f0a65bdb30", "people": "b52e4056ce00c575"}
    val_world = parse_world(VAL_WORLD)
    stating = lambda doc: any(f[lang][1] in doc for f in val_world for lang in ("zh", "en"))  # noqa: E731
    that_day = {**world, "docs": [doc for doc in world["docs"] if not stating(doc)],
                "sft": tiny_world(sft_conversations=1 / 3, behaviour_repeats=4, harmless_repeats=4)["sft"]}
    assert {part: digest(that_day[part]) for part in before} == before
    assert len(world["docs"]) - len(that_day["docs"]) == 2 * math.ceil(16 * len(val_world) / 19)  # per language
    assert digest(world["val"][:74]) == "63d82404fda9b9a1"
    val = Counter(q["kind"] for q in world["val"])
    assert len(val_world) == 13 and val["world"] == (2 + 13) * (20 + 12)  # every wording of 15 facts
    assert val["identity"] == val["refusal"] == 2 * (2 + 8 + 13)
    assert val["harmless"] == 2 * (2 + 8 + 13 + 12)  # 12 closer look-alikes a language since 2026-12-05
    assert val["unknown"] == 20 + 10 + 20  # requests outside the world, the first 10 strangers, 20 more
    stated = "\n".join(world["docs"])  # each new fact stated about as often as a held-out one, in both languages
    for fact in val_world:
        assert stated.count(fact["zh"][1]) >= 2 and stated.lower().count(fact["en"][1].lower()) >= 2
