"""A user's mistake gets one clear line and exit status 2, never a traceback; nothing is overwritten."""
import importlib.util
import json
import os
import shlex
import subprocess
import sys
import time

import pytest
import torch

from checkpoint import load_checkpoint
from conftest import ROOT, TINY_MODEL, run_script

SCRIPTS = ["pretrain.py", "sample.py", "data/prepare.py", "data/world/prepare.py"]


def assert_clear_error(result, *words):
    assert result.returncode == 2, result.stdout + result.stderr
    assert "Traceback" not in result.stderr and result.stderr.startswith("error: ")
    for word in words:
        assert word in result.stderr, result.stderr


@pytest.mark.parametrize("script", SCRIPTS)
def test_help_lists_every_option_with_its_default(script):
    spec = importlib.util.spec_from_file_location("script", ROOT / script)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    result = run_script(script, "--help")
    assert result.returncode == 0
    for name, (default, *_) in module.OPTIONS.items():
        assert f"--{name}" in result.stdout and f"[{default}]" in result.stdout


def test_unknown_option_suggests_the_right_one():
    assert_clear_error(run_script("pretrain.py", "--lerning_rate=1e-3"), "--lerning_rate", "--learning_rate")


def test_value_of_the_wrong_type():
    assert_clear_error(run_script("pretrain.py", "--max_iters=lots"), "--max_iters", "integer", "lots")


def test_dataset_never_prepared(tmp_path):
    assert_clear_error(run_script("pretrain.py", "--dataset=no_such_set", f"--out_dir={tmp_path}/o"),
                       "not prepared", "data/prepare.py", "--name=no_such_set")
    assert_clear_error(run_script("pretrain.py", f"--dataset={tmp_path}/mine", f"--out_dir={tmp_path}/o"),
                       f"--out_dir={tmp_path}/mine")  # a path is prepared where it points, not under data/


def test_resume_with_nothing_to_resume(tmp_path):
    assert_clear_error(run_script("pretrain.py", "--resume", f"--out_dir={tmp_path}/o"), "nothing to resume")


def test_an_existing_run_is_not_overwritten(tiny_dataset, tmp_path):
    out = tmp_path / "o"
    out.mkdir()
    (out / "ckpt.pt").write_bytes(b"the user's precious run")
    assert_clear_error(run_script("pretrain.py", f"--dataset={tiny_dataset}", f"--out_dir={out}", *TINY_MODEL),
                       "--resume", "--overwrite")
    assert (out / "ckpt.pt").read_bytes() == b"the user's precious run"


def test_corrupt_checkpoint_gives_a_clear_error(tmp_path):
    out = tmp_path / "o"
    out.mkdir()
    (out / "ckpt.pt").write_bytes(b"PK\x03\x04 not really a checkpoint")
    assert_clear_error(run_script("pretrain.py", "--resume", f"--out_dir={out}"), "cannot be read as a checkpoint")
    (out / "ckpt.pt").write_bytes(b"")
    assert_clear_error(run_script("sample.py", f"--ckpt={out}/ckpt.pt", "--prompt=hi"), "cannot be read", "an empty file")


def test_prepare_missing_empty_binary_and_non_utf8(tmp_path):
    assert_clear_error(run_script("data/prepare.py", tmp_path / "nope.txt"), "no such file")
    (tmp_path / "empty.txt").write_text("  \n")
    assert_clear_error(run_script("data/prepare.py", tmp_path / "empty.txt"), "holds no text")
    (tmp_path / "image.png").write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR")
    assert_clear_error(run_script("data/prepare.py", tmp_path / "image.png"), "binary", "offset 8")
    (tmp_path / "latin1.txt").write_bytes("café au lait".encode("latin-1"))
    assert_clear_error(run_script("data/prepare.py", tmp_path / "latin1.txt"), "not UTF-8", "byte 3", "--errors=replace")
    assert_clear_error(run_script("data/prepare.py"), "no input files")
    (tmp_path / "ok.txt").write_text("玉山是臺灣最高的山。" * 50, encoding="utf-8")
    for name in (".", "..", "a/b"):  # data/NAME must be a folder of its own under data/
        assert_clear_error(run_script("data/prepare.py", tmp_path / "ok.txt", f"--name={name}"), "is not a folder name")


def test_prepare_a_folder_then_pretrain_on_it(tmp_path):
    texts = tmp_path / "texts"
    (texts / "more").mkdir(parents=True)
    (texts / "a.txt").write_text("玉山是臺灣最高的山。" * 200, encoding="utf-8")
    (texts / "more" / "b.txt").write_text("Mount Everest is the highest mountain in the world. " * 100, encoding="utf-8")
    (texts / ".hidden").write_bytes(b"\x00\x01 ignored")
    out = tmp_path / "ds"
    result = run_script("data/prepare.py", texts, f"--out_dir={out}", "--vocab_size=300", check=True)
    assert "2 documents" in result.stdout
    assert_clear_error(run_script("data/prepare.py", texts, f"--out_dir={out}"), "--overwrite")
    run_script("pretrain.py", f"--dataset={out}", f"--out_dir={tmp_path}/run", *TINY_MODEL, "--max_iters=3", check=True)


def test_a_single_enormous_line_prepares_fine(tmp_path):
    (tmp_path / "one_line.txt").write_text("玉山是臺灣最高的山，" * 100_000, encoding="utf-8")  # 3 MB, no newline
    result = run_script("data/prepare.py", tmp_path / "one_line.txt", f"--out_dir={tmp_path}/ds", "--vocab_size=300",
                        check=True)
    assert "1 document ->" in result.stdout and (tmp_path / "ds" / "train.bin").stat().st_size > 100_000


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a GPU")
def test_a_device_that_is_not_there(tmp_path):
    assert_clear_error(run_script("pretrain.py", "--device=cuda", f"--out_dir={tmp_path}/o"), "no CUDA GPU", "--device=cpu")


# ----------------------------------------------------------------------------- every bad input, by kind
# docs/details.md's "When things go wrong" table lists these. Each gives one line naming the problem.

def load_script(script):
    spec = importlib.util.spec_from_file_location(script.replace("/", "_").removesuffix(".py"), ROOT / script)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


BAD_OPTIONS = [  # (script, option, what the line must say)
    ("pretrain.py", "--n_head=0", "at least 1"), ("pretrain.py", "--n_layer=-2", "at least 1"),
    ("pretrain.py", "--learning_rate=-1", "above 0"), ("pretrain.py", "--block_size=0", "at least 1"),
    ("pretrain.py", "--block_size=-3", "at least 1"), ("pretrain.py", "--batch_size=0", "at least 1"),
    ("finetune.py", "--batch_size=0", "at least 1"), ("pretrain.py", "--eval_interval=0", "at least 1"),
    ("pretrain.py", "--eval_iters=0", "at least 1"), ("pretrain.py", "--gradient_accumulation_steps=0", "at least 1"),
    ("pretrain.py", "--dropout=1.5", "below 1"), ("finetune.py", "--lora_dropout=2", "below 1"),
    ("pretrain.py", "--device=tpu", "cuda:N"), ("pretrain.py", "--max_iters=0", "at least 1"),
    ("pretrain.py", "--max_iters=-1", "at least 1"), ("finetune.py", "--max_iters=0", "auto or an integer"),
    ("finetune.py", "--learning_rate=inf", "above 0"), ("finetune.py", "--init_from=nowhere", "pretrained, scratch"),
    ("finetune.py", "--lora_rank=0", "at least 1"), ("pretrain.py", "--dtype=fp16", "bfloat16, float32"),
    ("data/prepare.py", "--errors=foo", "strict, replace"), ("data/prepare.py", "--vocab_size=100", "at least 260"),
    ("sample.py", "--top_p=-1", "above 0 and at most 1"), ("sample.py", "--top_p=2", "at most 1"),
    ("sample.py", "--temperature=nan", "at least 0"), ("sample.py", "--temperature=-1", "at least 0"),
    ("sample.py", "--max_new_tokens=0", "at least 1"), ("experiment.py", "--seeds=0", "at least 1"),
    ("pretrain.py", "--time=10 minutes", "90s, 10m or 1.5h"), ("pretrain.py", "--time=0s", "a duration"),
    ("sample.py", "--seed=18446744073709551616", "2**63 - 1"), ("serve.py", "--threads=1099511627776", "at most 1024"),
]


@pytest.mark.parametrize("script,option,words", BAD_OPTIONS)
def test_every_option_is_checked_against_its_range_where_it_is_parsed(script, option, words):
    from cli import UserError, parse_args
    with pytest.raises(UserError) as error:
        parse_args(load_script(script).OPTIONS, "", "", argv=[option])
    assert str(error.value).startswith(f"{option.split('=')[0]} must be") and words in str(error.value)


@pytest.mark.parametrize("script", ["pretrain.py", "finetune.py", "sample.py"])
def test_every_number_option_declares_its_valid_values(script):
    unchecked = [name for name, (default, *rest) in load_script(script).OPTIONS.items()
                 if (isinstance(default, (int, float)) and not isinstance(default, bool) or default == "auto")
                 and len(rest) < 2 and name != "seed"]
    assert not unchecked


def test_a_bad_value_reaches_the_user_as_one_line_and_auto_allows_zero(tiny_checkpoint, tmp_path):
    assert_clear_error(run_script("sample.py", "--top_p=2"), "--top_p must be above 0 and at most 1; got 2.0")
    assert_clear_error(run_script("pretrain.py", "--n_embd=7", "--n_head=2", f"--out_dir={tmp_path}/o"), "multiple of --n_head")
    assert_clear_error(run_script("pretrain.py", "--rope", "--n_embd=18", "--n_head=2", f"--out_dir={tmp_path}/o"), "must be even")
    from cli import parse_args
    config, _, typed = parse_args(load_script("finetune.py").OPTIONS, "", "", argv=["--min_lr=0"])
    assert config["min_lr"] == 0.0 and config["max_iters"] == "auto" and typed == {"min_lr"}


def test_an_out_dir_that_cannot_be_written(tiny_dataset, tmp_path):
    (tmp_path / "a_file").write_text("x")
    assert_clear_error(run_script("pretrain.py", f"--dataset={tiny_dataset}", f"--out_dir={tmp_path}/a_file/run", *TINY_MODEL),
                       "cannot write to --out_dir")
    assert_clear_error(run_script("pretrain.py", f"--dataset={tiny_dataset}", f"--out_dir={tmp_path}/a_file", *TINY_MODEL),
                       "is a file, not a folder")
    assert (tmp_path / "a_file").read_text() == "x"  # left as it was


# ----------------------------------------------------------------------------- nothing is lost
QA = [("你是誰？", "我是人工智慧"), ("日本的首都是哪裡？", "東京")]


@pytest.fixture()
def sft_files(tmp_path):
    rows = [{"instruction": q, "output": a} for q, a in QA] * 8
    (tmp_path / "sft.jsonl").write_text("\n".join(json.dumps(r, ensure_ascii=False) for r in rows), encoding="utf-8")
    return tmp_path / "sft.jsonl"


FT = ["--batch_size=4", "--eval_iters=1", "--dtype=float32", "--warmup_iters=1"]


def pretrain_run(tiny_dataset, out, *args, check=False):
    return run_script("pretrain.py", f"--dataset={tiny_dataset}", f"--out_dir={out}", *TINY_MODEL, "--eval_interval=2",
                      *args, check=check)


def test_overwrite_never_deletes_before_the_inputs_are_read(tiny_dataset, tiny_checkpoint, sft_files, tmp_path):
    run = tmp_path / "run"
    pretrain_run(tiny_dataset, run, "--max_iters=2", check=True)
    before = {name: (run / name).read_bytes() for name in ("ckpt.pt", "log.jsonl")}
    assert_clear_error(pretrain_run(tiny_dataset.parent / "mistyped", run, "--overwrite"), "not prepared")
    assert_clear_error(run_script("finetune.py", f"--base={run}/ckpt.pt", f"--out_dir={run}", "--overwrite",
                                  f"--data={sft_files}", *FT), "would be written over")
    assert_clear_error(run_script("finetune.py", f"--base={tiny_checkpoint}", f"--out_dir={run}", "--overwrite",
                                  f"--data={tmp_path}/mistyped.jsonl", *FT), "no such instruction file")
    assert {name: (run / name).read_bytes() for name in before} == before


def test_overwrite_replaces_the_old_run_at_the_first_checkpoint_only(tiny_dataset, tmp_path):
    import subprocess
    import sys
    run = tmp_path / "run"
    pretrain_run(tiny_dataset, run, "--max_iters=3", check=True)
    old = (run / "ckpt.pt").read_bytes(), (run / "log.jsonl").read_bytes()
    # a new run killed before its first checkpoint: the old run is whole
    process = subprocess.Popen([sys.executable, "pretrain.py", f"--dataset={tiny_dataset}", f"--out_dir={run}", *TINY_MODEL,
                                "--max_iters=100000", "--eval_interval=100000", "--overwrite"], cwd=ROOT,
                               stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    assert "model:" in process.stdout.readline() + process.stdout.readline()
    time.sleep(1.5)  # training steps, no checkpoint yet
    process.kill()
    process.wait()
    assert ((run / "ckpt.pt").read_bytes(), (run / "log.jsonl").read_bytes()) == old
    # a new run that reaches its first checkpoint replaces the old one, log and all
    pretrain_run(tiny_dataset, run, "--max_iters=2", "--overwrite", check=True)
    steps = [json.loads(line)["step"] for line in (run / "log.jsonl").read_text().splitlines() if '"loss"' in line]
    assert steps == [1, 2]


# ----------------------------------------------------------------------------- resuming
def test_resume_takes_what_was_typed_even_when_it_equals_the_default(tiny_dataset, tmp_path):
    run = tmp_path / "run"
    pretrain_run(tiny_dataset, run, "--max_iters=2", check=True)
    pretrain_run(tiny_dataset, run, "--resume", "--max_iters=4", "--eval_interval=100", check=True)  # 100 is the default
    saved = load_checkpoint(run / "ckpt.pt")
    assert saved["step"] == 4 and saved["config"]["eval_interval"] == 100
    assert_clear_error(pretrain_run(tiny_dataset, run, "--resume", "--max_iters=6", "--n_layer=4"),
                       "--n_layer cannot change", "(the run has 2)")
    assert_clear_error(pretrain_run(tiny_dataset, run, "--resume", "--max_iters=4"), "at step 4", "larger --max_iters")
    steps = [json.loads(line)["step"] for line in (run / "log.jsonl").read_text().splitlines() if '"loss"' in line]
    assert steps == [1, 2, 3, 4]


def test_a_pretraining_saved_before_the_speedrun_options_resumes_as_gpt2(tiny_dataset, tmp_path):
    """A run saved before --rope, ..., --muon existed trained GPT-2's way (AdamW): resumed, it goes
    on so, and typing those options as it trained is no change."""
    run = tmp_path / "run"
    gpt2 = ["--rope=false", "--qk_norm=false", "--relu2=false", "--zero_init=false", "--untied=false", "--logit_cap=0",
            "--muon=false"]
    pretrain_run(tiny_dataset, run, "--max_iters=2", *gpt2, check=True)
    saved = load_checkpoint(run / "ckpt.pt")
    for key in ("rope", "qk_norm", "relu2", "zero_init", "untied", "logit_cap", "muon", "muon_lr_scale"):
        del saved["config"][key]  # as a pretrain.py of before 2026-11-27 saved it
    torch.save(saved, run / "ckpt.pt")
    pretrain_run(tiny_dataset, run, "--resume", "--max_iters=3", check=True)
    after = load_checkpoint(run / "ckpt.pt")
    assert after["step"] == 3 and not after["config"]["muon"] and not after["config"]["rope"]
    torch.save({**after, "config": saved["config"]}, run / "ckpt.pt")
    pretrain_run(tiny_dataset, run, "--resume", "--max_iters=4", *gpt2, check=True)
    assert load_checkpoint(run / "ckpt.pt")["step"] == 4


def test_resume_without_retyping_lora_and_runs_of_another_kind(tiny_dataset, tiny_checkpoint, sft_files, tmp_path):
    lora = tmp_path / "lora"
    run_script("finetune.py", f"--base={tiny_checkpoint}", f"--data={sft_files}", f"--out_dir={lora}", "--lora",
               "--max_iters=2", "--eval_interval=2", *FT, check=True)
    resumed = run_script("finetune.py", "--resume", f"--out_dir={lora}", "--max_iters=4", check=True)
    assert "LoRA" in resumed.stdout and load_checkpoint(lora / "ckpt.pt")["step"] == 4
    assert_clear_error(run_script("finetune.py", "--resume", f"--out_dir={lora}", "--max_iters=6", "--lora_alpha=8"),
                       "--lora_alpha cannot change")
    assert_clear_error(run_script("pretrain.py", "--resume", f"--out_dir={lora}"),
                       "holds a LoRA fine-tuning run", f"python finetune.py --resume --out_dir={lora}")
    assert_clear_error(run_script("finetune.py", "--resume", f"--out_dir={tiny_checkpoint.parent}"),
                       "holds a pretraining run", "python pretrain.py --resume")


def test_options_for_later_stages_are_checked_before_any_work(tmp_path):
    """experiment.py's options for pretrain.py and finetune.py, and bench.py's rows, are refused at once."""
    out = tmp_path / "e"
    for option, words in (("--world_args=--people='3", "close its quotes"), ("--finetune_args=--max_iter=3", "--max_iters?"),
                          ("--pretrain_args=--n_layer=x", "expects an integer")):
        assert_clear_error(run_script("experiment.py", f"--out_dir={out}", option), option.split("=")[0], words)
    assert not out.exists()  # no world made, nothing pretrained
    assert_clear_error(run_script("bench.py", "--rows=pretrain,foo"), "unknown row 'foo'")
    assert_clear_error(run_script("bench.py", f"--json={tmp_path}/no_folder/b.json"), "its folder does not exist")
    assert_clear_error(run_script("finetune.py", "--merge", f"--out_dir={tmp_path}/ft"), "it goes with --lora")


def test_a_lora_run_is_not_resumed_on_a_replaced_base_and_files_of_the_other_kind_are_named(tiny_checkpoint, sft_files,
                                                                                             tmp_path):
    base = tmp_path / "base.pt"
    base.write_bytes(tiny_checkpoint.read_bytes())
    lora = tmp_path / "lora"
    run_script("finetune.py", f"--base={base}", f"--data={sft_files}", f"--out_dir={lora}", "--lora",
               "--max_iters=2", "--eval_interval=2", *FT, check=True)
    for folder, source in (("full", base), ("unended", lora / "ckpt.pt")):  # a model's folder; a LoRA run not ended
        (tmp_path / folder).mkdir()
        (tmp_path / folder / "ckpt.pt").write_bytes(source.read_bytes())
    for option, words in ((f"--ckpt={lora}/adapter.pt", "is a LoRA adapter, not a model"),
                          (f"--adapter={tmp_path}/full", "is a model, not a LoRA adapter"),
                          (f"--adapter={tmp_path}/unended", "has not ended"),
                          (f"--ckpt={lora}/ckpt.pt", "is a LoRA run (its adapter is adapter.pt)"),
                          (f"--adapter={base}", "is a model, not a LoRA adapter"),
                          (f"--adapter={tmp_path}/stopped/adapter.pt", "--resume --out_dir=")):
        assert_clear_error(run_script("sample.py", option, "--prompt=hi"), words)
    run_script("lora.py", "merge", f"{lora}/adapter.pt", f"--out={tmp_path}", check=True)  # a folder: merged.pt in it
    run_script("lora.py", "merge", lora, check=True)  # a LoRA run's folder: its adapter, merged beside it
    assert (tmp_path / "merged.pt").is_file() and (lora / "merged.pt").is_file() and not list(tmp_path.glob("*.tmp"))
    by_folder = run_script("sample.py", f"--adapter={lora}", "--prompt=hi", "--max_new_tokens=2", check=True)
    assert f"loaded {lora} (LoRA) on its base" in by_folder.stderr  # a LoRA run's folder: the adapter it ended with
    adapter = torch.load(lora / "adapter.pt", weights_only=True)
    first = next(iter(adapter["lora"]))
    for altered in ({**adapter, "lora_config": {"targets": ["c_attn"], "alpha": 2.0}},  # no rank
                    {**adapter, "lora": {**adapter["lora"], first: torch.zeros(3, 5)}}):  # a tensor of another shape
        torch.save(altered, tmp_path / "altered.pt")
        assert_clear_error(run_script("sample.py", f"--adapter={tmp_path}/altered.pt", "--prompt=hi"), "does not fit its base")
    odd = torch.load(base, weights_only=True)
    torch.save({**odd, "model_config": {**odd["model_config"], "n_head": 7}}, tmp_path / "odd.pt")  # width not a multiple
    assert_clear_error(run_script("sample.py", f"--ckpt={tmp_path}/odd.pt", "--prompt=hi"), "do not match its model config")
    torch.save({**adapter, "base_path": "out/trained_elsewhere/ckpt.pt"}, tmp_path / "moved.pt")  # relative, as typed
    assert_clear_error(run_script("sample.py", f"--adapter={tmp_path}/moved.pt", "--prompt=hi"),
                       "as given when it was trained", "--ckpt")
    other = torch.load(base, weights_only=True)
    other["model"] = {k: v + 0.01 for k, v in other["model"].items()}
    torch.save(other, base)
    assert_clear_error(run_script("finetune.py", "--resume", f"--out_dir={lora}", "--max_iters=4"),
                       "other weights than the base this LoRA run began on", "--overwrite")
    assert load_checkpoint(lora / "ckpt.pt")["step"] == 2  # nothing trained, nothing written


# ----------------------------------------------------------------------------- files and disk
def test_a_full_disk_keeps_the_old_file_and_leaves_no_partial_one(tmp_path, monkeypatch):
    import errno
    from checkpoint import save_checkpoint
    path = tmp_path / "ckpt.pt"
    save_checkpoint({"step": 1}, path)
    old = path.read_bytes()

    def full_disk(obj, f):
        f.write(b"half a checkpoint")
        raise OSError(errno.ENOSPC, "No space left on device")
    monkeypatch.setattr(torch, "save", full_disk)
    with pytest.raises(OSError) as error:
        save_checkpoint({"step": 2}, path)
    assert error.value.errno == errno.ENOSPC and error.value.filename == str(path)
    assert path.read_bytes() == old and [p.name for p in tmp_path.iterdir()] == ["ckpt.pt"]


def test_a_file_written_where_a_folder_is_names_the_path_and_leaves_no_temporary_file(tmp_path):
    from checkpoint import save_checkpoint
    (tmp_path / "taken").mkdir()
    with pytest.raises(OSError) as error:
        save_checkpoint({"step": 1}, tmp_path / "taken")
    assert error.value.filename == str(tmp_path / "taken") and sorted(p.name for p in tmp_path.iterdir()) == ["taken"]


def test_run_turns_a_full_disk_or_a_missing_package_into_one_line_and_a_bug_into_a_report(capsys):
    import errno
    from cli import run

    def fails(exception):
        def main():
            raise exception
        return main
    with pytest.raises(SystemExit) as exit_status:
        run(fails(OSError(errno.ENOSPC, "No space left on device", "out/pretrain/ckpt.pt")))
    err = capsys.readouterr().err
    assert exit_status.value.code == 2 and err.count("\n") == 1 and "free some space" in err and "Traceback" not in err
    with pytest.raises(SystemExit) as exit_status:
        run(fails(ZeroDivisionError("a bug")))
    err = capsys.readouterr().err
    assert exit_status.value.code == 1 and "Traceback" in err and "please report it" in err
    with pytest.raises(SystemExit) as exit_status:  # torch missing is the set-up; a module of ours missing, a bug
        run(fails(ModuleNotFoundError("No module named 'torch'", name="torch")))
    err = capsys.readouterr().err
    assert exit_status.value.code == 2 and err.count("\n") == 1 and "pip install -r requirements.txt" in err
    with pytest.raises(SystemExit) as exit_status:
        run(fails(ModuleNotFoundError("No module named 'checkpoint'", name="checkpoint")))
    assert exit_status.value.code == 1 and "please report it" in capsys.readouterr().err
    for too_big in (MemoryError(), RuntimeError("[enforce fail at alloc_cpu.cpp:118] DefaultCPUAllocator: can't allocate memory"),
                    torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 20.00 GiB")):
        with pytest.raises(SystemExit) as exit_status:
            run(fails(too_big))
        err = capsys.readouterr().err
        assert exit_status.value.code == 2 and err.count("\n") == 1 and "out of memory" in err and "--batch_size" in err
    with pytest.raises(SystemExit) as exit_status:  # any other RuntimeError is still a bug
        run(fails(RuntimeError("mat1 and mat2 shapes cannot be multiplied")))
    assert exit_status.value.code == 1 and "please report it" in capsys.readouterr().err


def test_hand_edited_checkpoints_name_what_is_missing(tiny_checkpoint, tmp_path):
    checkpoint = torch.load(tiny_checkpoint, weights_only=True)
    del checkpoint["vocab"]
    torch.save(checkpoint, tmp_path / "no_vocab.pt")
    assert_clear_error(run_script("sample.py", f"--ckpt={tmp_path}/no_vocab.pt", "--prompt=hi"), "lacks vocab")
    run = tmp_path / "run"
    run.mkdir()
    checkpoint = torch.load(tiny_checkpoint, weights_only=True)
    del checkpoint["optimizer"]
    torch.save(checkpoint, run / "ckpt.pt")
    assert_clear_error(run_script("pretrain.py", "--resume", f"--out_dir={run}"), "lacks optimizer")


def test_messages_never_give_unsafe_or_wrong_advice(tmp_path):
    import os

    class RunsCode:
        def __reduce__(self):
            return (os.system, ("true",))
    torch.save({"model": RunsCode()}, tmp_path / "code.pt")
    result = run_script("sample.py", f"--ckpt={tmp_path}/code.pt", "--prompt=hi")
    assert_clear_error(result, "could run code")
    assert "weights_only" not in result.stderr
    assert_clear_error(run_script("finetune.py", f"--base={tmp_path}/none.pt"), "--base")


def test_a_broken_pipe_is_quiet_only_when_the_reader_of_the_output_left(tmp_path):
    """| head: exit 1 and nothing said; a broken pipe of another kind (a child's, a socket) is a bug, reported."""
    script = tmp_path / "pipes.py"
    script.write_text("import os, sys\nfrom cli import run\n"
                      "def to_stdout():\n    for _ in range(100000):\n        print('line ' * 20)\n"
                      "def to_a_child():\n    read, write = os.pipe()\n    os.close(read)\n    os.write(write, b'x')\n"
                      "run(to_stdout if sys.argv[1] == 'stdout' else to_a_child)\n")
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    reader_left = subprocess.run(["bash", "-c", f"{shlex.quote(sys.executable)} {script} stdout | head -1"], env=env,
                                 capture_output=True, text=True, timeout=60)
    assert reader_left.stdout.startswith("line") and reader_left.stderr == ""
    child = subprocess.run([sys.executable, str(script), "child"], env=env, capture_output=True, text=True, timeout=60)
    assert child.returncode == 1 and "BrokenPipeError" in child.stderr and "please report it" in child.stderr
