"""
The training loop that pretraining and fine-tuning share, and what goes with it: device and
precision choice, AdamW with a warm-up and cosine schedule, atomic checkpoints, the step log.

Fine-tuning is pretraining with another start, other batches and a loss mask, so the loop
only needs get_batch(split, step, micro_step) -> (inputs, targets). Batches are a pure
function of the step: a resumed run draws exactly the batches the stopped run would have.
"""
from __future__ import annotations

import contextlib
import ctypes
import hashlib
import json
import math
import os
import signal
import sys
import time
from pathlib import Path
from typing import Callable

import torch
from tqdm import tqdm

from checkpoint import load_checkpoint, save_checkpoint
from cli import UserError

Batch = tuple[torch.Tensor, torch.Tensor]


def choose_device(device: str) -> str:
    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise UserError(f"--device={device}, but this machine has no CUDA GPU (torch.cuda.is_available() is False): use --device=cpu")
    return device


def keep_freed_memory() -> None:
    """Ask the C library's allocator (glibc, on Linux) to keep the memory a training step
    frees for the next step. By default it hands freed blocks back to the kernel (those over a
    threshold it adjusts as it goes, and the top of its heap past another), and the kernel then
    faults in and zeroes every page again at the next step: at the reference size in bench.py,
    160,000 to 190,000 page faults and a third of a CPU step's time. With this, blocks up to 32 MB (the
    most glibc lets one set) come from a heap that is never shrunk; the model keeps its large
    blocks under that (model.py, the output layer in slices). Elsewhere it does nothing."""
    if not sys.platform.startswith("linux"):
        return
    try:
        libc = ctypes.CDLL(None)
        libc.mallopt(-3, 32 * 2**20)  # M_MMAP_THRESHOLD: only blocks above 32 MB get a mapping of their own
        libc.mallopt(-1, 2**31 - 1)  # M_TRIM_THRESHOLD: never hand the top of the heap back
    except (OSError, AttributeError):  # no glibc (musl, say): nothing to set
        pass


def init_distributed(device: str) -> tuple[int, int, str]:
    """Under torchrun, which sets RANK and WORLD_SIZE for each process it starts: join the
    process group (gloo between CPU processes, nccl between GPUs; a GPU per process).
    -> (rank, world_size, device); (0, 1, device) for a plain single-process run."""
    if "RANK" not in os.environ:
        return 0, 1, device
    import torch.distributed as dist
    if device.startswith("cuda"):
        device = f"cuda:{os.environ.get('LOCAL_RANK', '0')}"
        torch.cuda.set_device(device)
    dist.init_process_group("nccl" if device.startswith("cuda") else "gloo")
    return dist.get_rank(), dist.get_world_size(), device


def choose_dtype(dtype: str, device: str) -> str:
    """bf16 where the hardware computes it natively (CUDA GPUs of Ampere and later; CPUs with
    AVX-512 BF16 or AMX, where it runs the matmuls several times faster), fp32 elsewhere."""
    if dtype != "auto":
        if dtype not in ("bfloat16", "float32"):
            raise UserError(f"--dtype must be auto, bfloat16 or float32, got {dtype!r}")
        return dtype
    if device.startswith("cuda"):
        return "bfloat16" if torch.cuda.is_bf16_supported() else "float32"
    return "bfloat16" if torch.cpu._is_avx512_bf16_supported() or torch.cpu._is_amx_tile_supported() else "float32"


def autocast(device: str, dtype: str):
    """Matmuls in bf16, weights and optimizer state in fp32 (mixed precision)."""
    if dtype == "float32":
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.split(":")[0], dtype=torch.bfloat16)


def batch_generator(seed: int, split: str, step: int, micro_step: int = 0) -> torch.Generator:
    """The random source of one batch, derived from where it is in the run and nothing else."""
    key = hashlib.sha256(f"{seed}/{split}/{step}/{micro_step}".encode()).digest()  # hash() of a str changes per process
    return torch.Generator().manual_seed(int.from_bytes(key[:8], "little") >> 1)


def make_optimizer(model: torch.nn.Module, learning_rate: float, weight_decay: float, beta2: float) -> torch.optim.AdamW:
    """AdamW over the trainable parameters. Weight decay only on the matrices of Linear layers:
    decaying LayerNorm gains and biases pulls them toward zero for no benefit, and decaying the
    embedding shrinks the rows of rare tokens between the few steps that update them."""
    decay, no_decay = [], []
    for module in model.modules():
        for name, p in module.named_parameters(recurse=False):
            if p.requires_grad:
                (decay if isinstance(module, torch.nn.Linear) and name == "weight" else no_decay).append(p)
    # the tied embedding is reached through lm_head (a Linear) too: keep it out of decay
    no_decay_ids = {id(p) for p in no_decay}
    decay = [p for p in decay if id(p) not in no_decay_ids]
    groups = [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    return torch.optim.AdamW(groups, lr=learning_rate, betas=(0.9, beta2), foreach=True)


def learning_rate_at(step: int, config: dict) -> float:
    """Linear warm-up, then cosine decay to min_lr at max_iters."""
    lr, min_lr, warmup, total = config["learning_rate"], config["min_lr"], config["warmup_iters"], config["max_iters"]
    if step < warmup:
        return lr * (step + 1) / warmup
    progress = (step - warmup) / max(1, total - warmup)
    return min_lr + 0.5 * (1 + math.cos(math.pi * min(progress, 1.0))) * (lr - min_lr)


def start_or_resume(config: dict, options: dict, out_dir: Path, fixed_keys: tuple[str, ...]) -> tuple[dict, dict | None]:
    """With --resume: the run saved in out_dir, its settings with what the user sets now on top
    (say, a larger --max_iters), except fixed_keys, which cannot change. Without: refuse to start
    over a run that out_dir already holds, unless --overwrite. -> (config, checkpoint or None)"""
    if not config["resume"]:
        if (out_dir / "ckpt.pt").exists() and not config["overwrite"]:
            raise UserError(f"{out_dir} already holds a run (ckpt.pt). Continue it with --resume, "
                            "replace it with --overwrite, or choose another --out_dir")
        # replaced now, not at the first save: a new run stopped early must not leave the old
        # checkpoint behind for a later --resume to continue under the new run's name
        (out_dir / "ckpt.pt").unlink(missing_ok=True)
        return config, None
    if not (out_dir / "ckpt.pt").exists():
        raise UserError(f"nothing to resume: {out_dir}/ckpt.pt does not exist. Start a run without --resume")
    checkpoint = load_checkpoint(out_dir / "ckpt.pt")
    changed = {k: v for k, v in config.items() if v != options[k][0]}
    for key in fixed_keys:
        if key in changed and changed[key] != checkpoint["config"][key]:
            raise UserError(f"--{key} cannot change when resuming (the run has {checkpoint['config'][key]})")
    return {**checkpoint["config"], **changed, "resume": True}, checkpoint


def restore(model, optimizer, checkpoint: dict) -> int:
    """Put a saved run back: weights (all, or a LoRA run's adapter), optimizer, random state.
    -> the step to continue from."""
    model.load_state_dict(checkpoint["model"], strict=checkpoint.get("kind") != "lora")
    optimizer.load_state_dict(checkpoint["optimizer"])
    torch.set_rng_state(checkpoint["rng"])
    return checkpoint["step"]


@torch.no_grad()
def estimate_loss(model, get_batch: Callable[[str, int, int], Batch], eval_iters: int, ctx) -> dict[str, float]:
    """Mean loss over the same eval_iters batches of each split every time, so that values compare."""
    model.eval()
    out = {}
    for split in ("train", "val"):
        losses = []
        for i in range(eval_iters):
            x, y = get_batch(split, -1, i)  # step -1: the evaluation batches, fixed for the whole run
            with ctx:
                losses.append(model(x, y)[1].item())
        out[split] = sum(losses) / len(losses)
    model.train()
    return out


def train(model, optimizer, get_batch: Callable[[str, int, int], Batch], config: dict, out_dir: Path,
          start_step: int = 0, checkpoint_extra: dict | None = None, weights_to_save: Callable[[], dict] | None = None) -> dict:
    """Run steps start_step .. max_iters-1; save out_dir/ckpt.pt at every evaluation, at the end,
    and when Ctrl-C asks to stop (after the step in progress). weights_to_save gives the tensors
    to keep (default: the whole model; LoRA keeps only the adapter). Returns the last losses.

    Under torchrun every process runs this loop on its own batches: process `rank` of `world`
    draws micro-batch number micro_step * world + rank, so together they take exactly the
    batches one process would take with world times the gradient accumulation, and
    DistributedDataParallel averages their gradients. Process 0 alone logs and checkpoints."""
    distributed = torch.distributed.is_available() and torch.distributed.is_initialized()
    rank, world = (torch.distributed.get_rank(), torch.distributed.get_world_size()) if distributed else (0, 1)
    main_process = rank == 0
    keep_freed_memory()
    ctx = autocast(config["device"], config["dtype"])
    accum = config["gradient_accumulation_steps"]
    trainable = [p for p in model.parameters() if p.requires_grad]
    stepper = torch.nn.parallel.DistributedDataParallel(model) if distributed else model
    log = open(out_dir / "log.jsonl", "a") if main_process else None

    def checkpoint_now(step: int) -> None:
        save_checkpoint({"model": (weights_to_save or model.state_dict)(), "optimizer": optimizer.state_dict(), "step": step,
                         "config": config, "rng": torch.get_rng_state(), **(checkpoint_extra or {})}, out_dir / "ckpt.pt")

    stop_requested = []
    def request_stop(signum, frame):
        if stop_requested:  # a second Ctrl-C: stop now, without saving
            raise KeyboardInterrupt
        stop_requested.append(True)
        tqdm.write("Ctrl-C: saving a checkpoint after this step (press again to quit without saving)")
    previous_handler = signal.signal(signal.SIGINT, request_stop)

    def stop_now() -> bool:
        """Whether to stop after this step; with several processes, all of them, if any was asked."""
        if not distributed:
            return bool(stop_requested)
        flag = torch.tensor([float(bool(stop_requested))], device=config["device"])
        torch.distributed.all_reduce(flag)
        return flag.item() > 0

    losses = {}
    bar = tqdm(total=config["max_iters"], initial=start_step, desc="training", unit="step", dynamic_ncols=True,
               disable=not main_process)
    model.train()
    try:
        for step in range(start_step, config["max_iters"]):
            t0 = time.perf_counter()
            lr = learning_rate_at(step, config)
            for group in optimizer.param_groups:
                group["lr"] = lr
            loss_sum, tokens = 0.0, 0
            for micro_step in range(accum):
                x, y = get_batch("train", step, micro_step * world + rank)
                # gradients are averaged across processes once per step, at the last micro-batch
                sync = stepper.no_sync() if distributed and micro_step < accum - 1 else contextlib.nullcontext()
                with sync:
                    with ctx:
                        _, loss = stepper(x, y)
                    (loss / accum).backward()
                loss_sum += loss.detach()
                tokens += x.numel() * world
            if config["grad_clip"] > 0:
                torch.nn.utils.clip_grad_norm_(trainable, config["grad_clip"])
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
            train_loss = loss_sum.item() / accum  # .item() waits for the step to finish: the timing is honest
            seconds = time.perf_counter() - t0
            tokens_per_s = tokens / seconds
            done = step + 1
            stopping = stop_now()
            if main_process:
                log.write(json.dumps({"step": done, "loss": round(train_loss, 5), "lr": lr,
                                      "seconds": round(seconds, 4), "tokens_per_s": round(tokens_per_s, 1)}) + "\n")
                bar.update(1)
                bar.set_postfix(loss=f"{train_loss:.3f}", tok_s=f"{tokens_per_s:,.0f}")
                if done % config["eval_interval"] == 0 or done == config["max_iters"]:
                    losses = estimate_loss(model, get_batch, config["eval_iters"], ctx)
                    tqdm.write(f"step {done}: train loss {losses['train']:.4f}, val loss {losses['val']:.4f}")
                    log.write(json.dumps({"step": done, "train_loss": round(losses["train"], 5),
                                          "val_loss": round(losses["val"], 5)}) + "\n")
                    checkpoint_now(done)
                elif stopping:
                    checkpoint_now(done)
                log.flush()
            if stopping:
                bar.close()
                if main_process:
                    print(f"stopped at step {done}; checkpoint saved to {out_dir / 'ckpt.pt'}. Continue with --resume.")
                raise SystemExit(130)
    finally:
        bar.close()
        if log:
            log.close()
        signal.signal(signal.SIGINT, previous_handler)
    return losses
