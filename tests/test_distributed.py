"""Data-parallel training with torchrun on CPU (gloo): two processes pretrain and fine-tune as one
process with twice the gradient accumulation would, and a two-process run resumes."""
import contextlib
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


def tiny_gpt():
    from model import GPT, GPTConfig
    torch.manual_seed(0)
    return GPT(GPTConfig(block_size=8, vocab_size=64, n_layer=1, n_head=2, n_embd=16))


def uneven_batches():
    """Two micro-batches of masked targets: one with a single supervised target, one with twelve."""
    from model import IGNORE
    generator = torch.Generator().manual_seed(1)
    x = torch.randint(64, (2, 2, 8), generator=generator)
    y = torch.randint(64, (2, 2, 8), generator=generator)
    y[0].view(-1)[1:] = IGNORE
    y[1, :, :2] = IGNORE
    return [(x[0], y[0]), (x[1], y[1])]


def gradients(model):
    return {name: p.grad.clone() for name, p in model.named_parameters()}


def two_processes(rank, init_file, out):
    from trainer import weighted_backward
    torch.distributed.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=2)
    model = tiny_gpt()
    weighted_backward(torch.nn.parallel.DistributedDataParallel(model), [uneven_batches()[rank]], contextlib.nullcontext(),
                      distributed=True)
    if rank == 0:
        torch.save(gradients(model), out)
    torch.distributed.barrier()  # neither leaves while the other still talks: gloo aborts a process torn down mid-exchange
    os._exit(0)  # and no teardown at all: gloo's threads abort an exiting interpreter now and then (SIGABRT)


def test_every_supervised_token_weighs_the_same_however_the_step_is_split(tmp_path):
    from trainer import weighted_backward
    batches = uneven_batches()
    big = tiny_gpt()  # one batch holding both
    big(torch.cat([x for x, _ in batches]), torch.cat([y for _, y in batches]))[1].backward()
    accumulated = tiny_gpt()  # one process, two micro-batches
    weighted_backward(accumulated, batches, contextlib.nullcontext(), distributed=False)
    torch.multiprocessing.spawn(two_processes, args=(tmp_path / "init", tmp_path / "grads.pt"), nprocs=2)
    for other in (gradients(accumulated), torch.load(tmp_path / "grads.pt")):
        for name, grad in gradients(big).items():
            assert torch.allclose(grad, other[name], atol=1e-6, rtol=1e-4), name
    means = tiny_gpt()  # a mean of micro-batch means weighs the lone target twelve times more: not the same
    for x, y in batches:
        (means(x, y)[1] / 2).backward()
    assert not torch.allclose(gradients(means)["transformer.wte.weight"], gradients(big)["transformer.wte.weight"], atol=1e-6, rtol=1e-4)


def test_two_processes_fine_tune_lora_as_one_with_accumulation(tiny_checkpoint, tmp_path):
    rows = [{"messages": [{"role": "user", "content": q}, {"role": "assistant", "content": a}]}
            for q, a in [("你是誰？", "我是人工智慧"), ("台灣最高的山是哪座？", "玉山"), ("Who are you?", "I am an AI")]]
    data = tmp_path / "sft.jsonl"
    data.write_text("".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows * 8), encoding="utf-8")
    args = ["finetune.py", f"--base={tiny_checkpoint}", f"--data={data}", "--lora", "--lora_rank=4", "--batch_size=4",
            "--max_iters=6", "--eval_interval=6", "--eval_iters=1", "--dtype=float32", "--learning_rate=1e-2", "--threads=1"]
    one, two = tmp_path / "one", tmp_path / "two"
    run_script(*args, "--gradient_accumulation_steps=2", f"--out_dir={one}", check=True)
    result = torchrun(*args, f"--out_dir={two}")
    assert result.stdout.count("next: python sample.py") == 1  # process 0 alone saves, evaluates and speaks
    a, b = (torch.load(out / "adapter.pt", weights_only=True)["lora"] for out in (one, two))
    assert a.keys() == b.keys() and any(t.abs().sum() > 0 for name, t in a.items() if "lora_B" in name)  # it learnt
    for name, tensor in a.items():
        assert torch.allclose(tensor, b[name], atol=1e-5, rtol=1e-4), name
