"""Pretraining end to end on a tiny dataset: the loss falls, Ctrl-C saves, resuming is exact."""
import json
import signal
import subprocess
import sys
import time

import pytest
import torch

from conftest import ROOT, TINY_MODEL, run_script
from checkpoint import load_checkpoint


def read_log(out_dir):
    return [json.loads(line) for line in (out_dir / "log.jsonl").read_text().splitlines()]


def test_tiny_run_loss_falls_and_checkpoint_loads(tiny_dataset, tmp_path):
    out = tmp_path / "run"
    result = run_script("pretrain.py", f"--dataset={tiny_dataset}", f"--out_dir={out}", *TINY_MODEL,
                        "--max_iters=60", "--eval_interval=30", "--learning_rate=6e-3", "--warmup_iters=5", check=True)
    assert "sample.py --raw" in result.stdout and "finetune.py --lora" in result.stdout
    log = read_log(out)
    steps = [r for r in log if "loss" in r]
    vals = [r["val_loss"] for r in log if "val_loss" in r]
    assert len(steps) == 60 and {"step", "loss", "lr", "seconds", "tokens", "tokens_per_s"} <= set(steps[0])
    assert {r["tokens"] for r in steps} == {8 * 32}  # batch x context, every step
    assert vals[-1] < 0.5 * steps[0]["loss"]  # the tiny text is very repetitive: the loss must fall a lot
    checkpoint = load_checkpoint(out / "ckpt.pt")
    assert checkpoint["step"] == 60 and checkpoint["vocab"] == json.loads((tiny_dataset / "meta.json").read_text())["vocab"]


GPT2 = ["--rope=false", "--qk_norm=false", "--relu2=false", "--zero_init=false", "--untied=false", "--logit_cap=0",
        "--muon=false"]


@pytest.mark.parametrize("changes", [[], GPT2], ids=["default", "gpt2"])
def test_ctrl_c_saves_and_resume_is_bit_identical(tiny_dataset, tmp_path, changes):
    """The default (every change since GPT-2 but the logit cap and the untied layer, Muon's and AdamW's states both saved) and GPT-2's model with AdamW."""
    args = [f"--dataset={tiny_dataset}", *TINY_MODEL, "--max_iters=400", "--eval_interval=1000", "--dropout=0.1", *changes]
    straight, stopped = tmp_path / "straight", tmp_path / "stopped"
    run_script("pretrain.py", *args, f"--out_dir={straight}", check=True)

    # the same run, interrupted with Ctrl-C (SIGINT) once it is under way, then resumed
    process = subprocess.Popen([sys.executable, "pretrain.py", *args, f"--out_dir={stopped}"], cwd=ROOT,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    log = stopped / "log.jsonl"
    deadline = time.time() + 60
    while time.time() < deadline and not (log.exists() and log.read_text().count("\n") >= 20):
        time.sleep(0.05)
    process.send_signal(signal.SIGINT)
    stdout, _ = process.communicate(timeout=60)
    assert process.returncode == 130 and "--resume" in stdout
    stopped_at = load_checkpoint(stopped / "ckpt.pt")["step"]
    assert 20 <= stopped_at < 400

    run_script("pretrain.py", f"--out_dir={stopped}", "--resume", check=True)
    a, b = load_checkpoint(straight / "ckpt.pt"), load_checkpoint(stopped / "ckpt.pt")
    assert a["step"] == b["step"] == 400
    for name, tensor in a["model"].items():
        assert torch.equal(tensor, b["model"][name]), name
    losses = lambda d: [r["loss"] for r in read_log(d) if "loss" in r]  # noqa: E731
    assert losses(straight) == losses(stopped)  # every step's loss too: same batches, same order
    assert losses(straight)[-1] < losses(straight)[0] - 1.0
    default = not changes
    assert a["model_config"]["rope"] == a["model_config"]["qk_norm"] == default and a["model_config"]["logit_cap"] == 0
    assert (set(a["optimizer"]) == {"muon", "adamw"}) == default


def test_a_time_budget_fits_the_step_count_and_resume_keeps_it(tiny_dataset, tmp_path):
    out = tmp_path / "timed"
    args = ["pretrain.py", f"--dataset={tiny_dataset}", f"--out_dir={out}", *TINY_MODEL, "--eval_interval=40"]
    t0 = time.time()
    result = run_script(*args, "--time=4s", check=True)
    wall = time.time() - t0
    saved = load_checkpoint(out / "ckpt.pt")
    fitted = saved["config"]["max_iters"]
    assert "steps fitted" in result.stdout and saved["step"] == fitted > 10
    assert [r["step"] for r in read_log(out) if "loss" in r] == list(range(1, fitted + 1))
    assert wall < 4 + 20  # the steps keep to the budget; starting the interpreter and torch adds seconds (loose: shared CPU)
    run_script(*args[:3], "--resume", f"--max_iters={fitted + 3}", check=True)  # a fitted run resumes like any other
    assert load_checkpoint(out / "ckpt.pt")["step"] == fitted + 3
    result = run_script(*args, "--time=4s", "--max_iters=100", "--overwrite")
    assert result.returncode == 2 and "without --max_iters" in result.stderr
