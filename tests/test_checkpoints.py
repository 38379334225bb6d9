"""Checkpoints survive kills, refuse corruption and code, and resuming after a kill is exact."""
import json
import os
import signal
import subprocess
import sys
import time

import torch

from checkpoint import load_checkpoint
from conftest import ROOT, TINY_MODEL, run_script


def start(args):
    return subprocess.Popen([sys.executable, "pretrain.py", *args], cwd=ROOT, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)


def wait_for_log_lines(log, n, timeout=60):
    deadline = time.time() + timeout
    while time.time() < deadline and not (log.exists() and log.read_text().count("\n") >= n):
        time.sleep(0.01)


def test_sigkill_at_any_moment_leaves_a_loadable_checkpoint(tiny_dataset, tmp_path):
    # a checkpoint every step, large enough that a kill often lands in the middle of writing one
    args = [f"--dataset={tiny_dataset}", *TINY_MODEL, "--n_embd=128", "--max_iters=100000", "--eval_interval=1",
            "--eval_iters=1"]
    out = tmp_path / "run"
    for attempt in range(4):
        process = start(args + [f"--out_dir={out}", "--overwrite"] if attempt == 0 else args + [f"--out_dir={out}", "--resume"])
        wait_for_log_lines(out / "log.jsonl", 3 + 4 * attempt)
        time.sleep(0.013 * attempt)  # land at different moments of the step/save cycle
        process.send_signal(signal.SIGKILL)
        process.wait()
        checkpoint = load_checkpoint(out / "ckpt.pt")  # never half a file: the old one or the new one
        assert checkpoint["step"] >= 1
    assert not any(p.name.endswith(".pt") and p.name != "ckpt.pt" for p in out.iterdir())  # only a stray .tmp at most


def test_sigkill_then_resume_continues_exactly(tiny_dataset, tmp_path):
    args = [f"--dataset={tiny_dataset}", *TINY_MODEL, "--max_iters=150", "--eval_interval=20"]
    straight, killed = tmp_path / "straight", tmp_path / "killed"
    run_script("pretrain.py", *args, f"--out_dir={straight}", check=True)
    process = start(args + [f"--out_dir={killed}"])
    wait_for_log_lines(killed / "log.jsonl", 45)
    process.send_signal(signal.SIGKILL)
    process.wait()
    logged = sum(1 for line in (killed / "log.jsonl").read_text().splitlines() if '"loss"' in line)
    saved = load_checkpoint(killed / "ckpt.pt")["step"]
    assert saved % 20 == 0 and logged - 20 < saved <= logged  # lost at most the steps since the last checkpoint
    run_script("pretrain.py", f"--out_dir={killed}", "--resume", check=True)
    a, b = load_checkpoint(straight / "ckpt.pt"), load_checkpoint(killed / "ckpt.pt")
    for name, tensor in a["model"].items():
        assert torch.equal(tensor, b["model"][name]), name


def test_truncated_checkpoint_is_refused_clearly(tiny_checkpoint, tmp_path):
    data = tiny_checkpoint.read_bytes()
    (tmp_path / "half.pt").write_bytes(data[: len(data) // 2])
    result = run_script("sample.py", f"--ckpt={tmp_path / 'half.pt'}", "--prompt=hi")
    assert result.returncode == 2 and "cannot be read as a checkpoint" in result.stderr and "Traceback" not in result.stderr


class RunsCode:
    def __reduce__(self):
        return (os.system, (f"touch {MARKER}",))


MARKER = ""


def test_a_checkpoint_holding_code_is_refused_and_the_code_never_runs(tmp_path):
    global MARKER
    MARKER = str(tmp_path / "pwned")
    torch.save({"model": RunsCode(), "model_config": {}}, tmp_path / "evil.pt")
    result = run_script("sample.py", f"--ckpt={tmp_path / 'evil.pt'}", "--prompt=hi")
    assert result.returncode == 2 and "could run code: refused" in result.stderr
    assert not os.path.exists(MARKER)


def test_tensors_that_do_not_match_the_config_are_refused(tiny_checkpoint, tmp_path):
    checkpoint = torch.load(tiny_checkpoint, weights_only=True)
    checkpoint["model_config"]["n_embd"] = 64
    torch.save(checkpoint, tmp_path / "odd.pt")
    result = run_script("sample.py", f"--ckpt={tmp_path / 'odd.pt'}", "--prompt=hi")
    assert result.returncode == 2 and "do not match its model config" in result.stderr


def test_resuming_on_a_dataset_with_another_vocabulary_is_refused(tiny_dataset, tmp_path):
    from data.prepare import write_dataset
    other = tmp_path / "other"
    write_dataset(["completely different text, in English only. " * 50], other, vocab_size=300, val_fraction=0.2,
                  sources=["test"])
    assert json.loads((other / "meta.json").read_text())["vocab"] != json.loads((tiny_dataset / "meta.json").read_text())["vocab"]
    out = tmp_path / "run"
    run_script("pretrain.py", f"--dataset={tiny_dataset}", f"--out_dir={out}", *TINY_MODEL, "--max_iters=3", check=True)
    result = run_script("pretrain.py", f"--out_dir={out}", "--resume", f"--dataset={other}", "--max_iters=6")
    assert result.returncode == 2 and "another vocabulary" in result.stderr
