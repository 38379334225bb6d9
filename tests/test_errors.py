"""A user's mistake gets one clear line and exit status 2, never a traceback; nothing is overwritten."""
import importlib.util

import pytest
import torch

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
    for name, (default, _) in module.OPTIONS.items():
        assert f"--{name}" in result.stdout and f"[{default}]" in result.stdout


def test_unknown_option_suggests_the_right_one():
    assert_clear_error(run_script("pretrain.py", "--lerning_rate=1e-3"), "--lerning_rate", "--learning_rate")


def test_value_of_the_wrong_type():
    assert_clear_error(run_script("pretrain.py", "--max_iters=lots"), "--max_iters", "integer", "lots")


def test_dataset_never_prepared(tmp_path):
    assert_clear_error(run_script("pretrain.py", "--dataset=no_such_set", f"--out_dir={tmp_path}/o"),
                       "not prepared", "data/prepare.py")


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


def test_prepare_missing_empty_binary_and_non_utf8(tmp_path):
    assert_clear_error(run_script("data/prepare.py", tmp_path / "nope.txt"), "no such file")
    (tmp_path / "empty.txt").write_text("  \n")
    assert_clear_error(run_script("data/prepare.py", tmp_path / "empty.txt"), "holds no text")
    (tmp_path / "image.png").write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR")
    assert_clear_error(run_script("data/prepare.py", tmp_path / "image.png"), "binary", "offset 8")
    (tmp_path / "latin1.txt").write_bytes("café au lait".encode("latin-1"))
    assert_clear_error(run_script("data/prepare.py", tmp_path / "latin1.txt"), "not UTF-8", "byte 3", "--errors=replace")
    assert_clear_error(run_script("data/prepare.py"), "no input files")


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
