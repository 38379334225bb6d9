"""Data-parallel training with torchrun on CPU (gloo): two processes train as one process with
twice the gradient accumulation would, and a two-process run resumes."""
import json
import os
import subprocess
import sys

import torch

from conftest import ROOT, TINY_MODEL, run_script
from checkpoint import load_checkpoint


def torchrun(*args):
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
    result = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", *map(str, args)],
                            cwd=ROOT, capture_output=True, text=True, timeout=180, env=env)
    assert result.returncode == 0, result.stdout + result.stderr
    return result


def test_two_processes_match_one_with_accumulation_and_resume(tiny_dataset, tmp_path):
    args = ["pretrain.py", f"--dataset={tiny_dataset}", *TINY_MODEL, "--batch_size=4", "--threads=1",
            "--eval_interval=6", "--learning_rate=3e-3", "--warmup_iters=2"]
    one, two = tmp_path / "one", tmp_path / "two"
    run_script(*args, "--gradient_accumulation_steps=2", "--max_iters=6", f"--out_dir={one}", check=True)
    first = torchrun(*args, "--max_iters=6", f"--out_dir={two}")
    assert first.stdout.count("model:") == 1 and "2 processes" in first.stdout  # process 0 alone speaks
    assert "256 tokens per step" in first.stdout  # 2 processes x 4 sequences x 32 tokens

    # both continue to step 10: --resume under torchrun too
    run_script(*args[:1], "--resume", "--max_iters=10", f"--out_dir={one}", check=True)
    torchrun(*args[:1], "--resume", "--max_iters=10", f"--out_dir={two}")

    a, b = load_checkpoint(one / "ckpt.pt"), load_checkpoint(two / "ckpt.pt")
    assert a["step"] == b["step"] == 10
    for name, tensor in a["model"].items():  # the same batches, gradients averaged instead of accumulated
        assert torch.allclose(tensor, b["model"][name], atol=1e-5, rtol=1e-4), name
    log = [json.loads(line) for line in (two / "log.jsonl").read_text().splitlines() if '"loss"' in line]
    assert [r["step"] for r in log] == list(range(1, 11))  # one log, written once, not once per process
    assert log[-1]["loss"] < 0.92 * log[0]["loss"]  # it learns
