"""Shared helpers: a tiny dataset made by the test itself, and running a script as a user would."""
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("OMP_NUM_THREADS", "1")  # one thread per test and script: pytest -n runs a worker per core

TINY_TEXT = ("臺灣最高的山是玉山，海拔3,952公尺。世界最高的山是聖母峰。The capital of Japan is Tokyo. "
             "世界最深的海溝是馬里亞納海溝。日本的首都是東京。The highest mountain in Taiwan is Yushan. ") * 40

# a model small enough that a whole run takes seconds
TINY_MODEL = ["--n_layer=2", "--n_head=2", "--n_embd=32", "--block_size=32", "--batch_size=8",
              "--eval_iters=2", "--dtype=float32"]


def run_script(*args, check=False, timeout=120, **kwargs) -> subprocess.CompletedProcess:
    """python SCRIPT ARGS... from the repository root, capturing output."""
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    result = subprocess.run([sys.executable, *map(str, args)], cwd=ROOT, capture_output=True,
                            text=kwargs.pop("text", True), timeout=timeout, env=env, **kwargs)
    if check and result.returncode != 0:
        raise AssertionError(f"{args} failed ({result.returncode}):\n{result.stdout}\n{result.stderr}")
    return result


@pytest.fixture(scope="session")
def tiny_dataset(tmp_path_factory) -> Path:
    from data.prepare import write_dataset
    folder = tmp_path_factory.mktemp("tiny")
    docs = [TINY_TEXT[i:i + 400] for i in range(0, len(TINY_TEXT), 400)]
    write_dataset(docs, folder, vocab_size=400, val_fraction=0.2, sources=["test"])
    return folder


@pytest.fixture(scope="session")
def tiny_checkpoint(tiny_dataset, tmp_path_factory) -> Path:
    """A tiny pretrained model on the tiny dataset (a few seconds of training)."""
    out = tmp_path_factory.mktemp("tiny_run")
    run_script("pretrain.py", f"--dataset={tiny_dataset}", f"--out_dir={out}", *TINY_MODEL, "--max_iters=80",
               "--eval_interval=80", "--learning_rate=6e-3", "--warmup_iters=5", check=True)
    return out / "ckpt.pt"
