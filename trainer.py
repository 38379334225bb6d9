"""
The training loop that pretraining and fine-tuning share, and what goes with it: the warm-up
and cosine schedule, starting or resuming a run, checkpoints, the step log, Ctrl-C (the
optimizer itself: optimizer.py).

Fine-tuning is pretraining with another start, other batches and a loss mask, so the loop
only needs get_batch(split, step, micro_step) -> (inputs, targets). Batches are a pure
function of the step: a resumed run draws exactly the batches the stopped run would have.
"""
from __future__ import annotations

import contextlib
import hashlib
import itertools
import json
import math
import os
import signal
import statistics
import time
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from tqdm import tqdm

from checkpoint import RUN_KEYS, RUN_KINDS, load_checkpoint, save_checkpoint
from cli import UserError, atomic_write
from machine import autocast, keep_freed_memory
from model import IGNORE

Batch = tuple[torch.Tensor, torch.Tensor]


def derived_seed(*parts) -> int:
    """A seed that depends on parts (seed, what for, where in the run) and nothing else."""
    key = hashlib.sha256("/".join(map(str, parts)).encode()).digest()  # hash() of a str changes per process
    return int.from_bytes(key[:8], "little") >> 1


def batch_generator(seed: int, split: str, step: int, micro_step: int = 0) -> torch.Generator:
    """The random source of one batch, derived from where it is in the run and nothing else."""
    return torch.Generator().manual_seed(derived_seed(seed, split, step, micro_step))


def text_windows(tokens, rows: int, width: int, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """rows windows of a token array at random places: inputs and next-token targets, width wide."""
    starts = torch.randint(len(tokens) - width - 1, (rows,), generator=generator).numpy()
    xy = torch.from_numpy(tokens[starts[:, None] + np.arange(width + 1)].astype(np.int64))  # one gather from the memmap
    return xy[:, :-1], xy[:, 1:]


@dataclass
class TrainSettings:
    """What the loop needs, typed: the options of the same names of pretrain.py and finetune.py."""
    max_iters: int
    learning_rate: float
    min_lr: float
    warmup_iters: int
    gradient_accumulation_steps: int
    grad_clip: float  # 0: off
    eval_interval: int
    eval_iters: int
    seed: int
    device: str
    dtype: str
    time: float = 0.0  # a time budget in seconds (0: none): max_iters is then fitted to it (fit_to_time)
    time_fitted: bool = False  # max_iters is the fitted count, saved so that --resume keeps it

    @classmethod
    def of(cls, config: dict) -> TrainSettings:
        values = {f.name: config[f.name] for f in fields(cls) if f.name in config}
        return cls(**{**values, "time": float(values.get("time") or 0), "time_fitted": bool(values.get("time_fitted"))})


def learning_rate_at(step: int, s: TrainSettings) -> float:
    """Linear warm-up, then cosine decay to min_lr at max_iters."""
    lr, min_lr, warmup, total = s.learning_rate, s.min_lr, s.warmup_iters, s.max_iters
    if step < warmup:
        return lr * (step + 1) / warmup
    progress = (step - warmup) / max(1, total - warmup)
    return min_lr + 0.5 * (1 + math.cos(math.pi * min(progress, 1.0))) * (lr - min_lr)


def writable_folder(out_dir: Path) -> None:
    """Make out_dir and check that a file can be written there, before any work is done."""
    if out_dir.exists() and not out_dir.is_dir():
        raise UserError(f"--out_dir={out_dir} is a file, not a folder: choose a folder (a new name is made)")
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
        probe = out_dir / f".write_test_{os.getpid()}"  # one per process: under torchrun all of them check
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as e:
        raise UserError(f"cannot write to --out_dir={out_dir} ({e.strerror}): choose a folder you can write to") from None


def start_or_resume(config: dict, typed: set[str], out_dir: Path, fixed_keys: tuple[str, ...],
                    kinds: tuple[str, ...], before_options: dict | None = None) -> tuple[dict, dict | None]:
    """With --resume: the run of one of these kinds saved in out_dir, its settings with what the
    user typed now on top (say, a larger --max_iters), except fixed_keys, which cannot change.
    Without: refuse to start over a run that out_dir already holds, unless --overwrite (the old
    run is replaced only when the new one saves its first checkpoint: see train).
    before_options: what a run saved before an option existed did instead of today's default.
    -> (config, checkpoint or None)"""
    if not config["resume"]:
        if (out_dir / "ckpt.pt").exists() and not config["overwrite"]:
            raise UserError(f"{out_dir} already holds a run (ckpt.pt). Continue it with --resume, "
                            "replace it with --overwrite, or choose another --out_dir")
        return config, None
    if not (out_dir / "ckpt.pt").exists():
        raise UserError(f"nothing to resume: {out_dir}/ckpt.pt does not exist. Start a run without --resume")
    checkpoint = load_checkpoint(out_dir / "ckpt.pt", required=("model", "model_config", "vocab"))
    kind = checkpoint.get("kind")
    if kind not in kinds:
        what, command = RUN_KINDS.get(kind, ("a model with no training state (nothing to resume)", ""))
        raise UserError(f"{out_dir} holds {what}, which this script does not continue"
                        + (f": resume it with {command.format(out_dir)}" if command else ""))
    missing = [k for k in RUN_KEYS if k not in checkpoint]
    if missing:
        raise UserError(f"{out_dir}/ckpt.pt lacks {', '.join(missing)}, which resuming needs: the file was altered. "
                        "Start the run again without --resume")
    saved = {**(before_options or {}), **checkpoint["config"]}
    for key in fixed_keys:
        if key in typed and config[key] != saved.get(key):
            raise UserError(f"--{key} cannot change when resuming (the run has {saved.get(key)})")
    # options newer than the saved run take before_options' value or their default (its architecture comes from
    # its model_config)
    return {**config, **saved, **{k: config[k] for k in typed}, "resume": True}, checkpoint


def restore(model, optimizer, checkpoint: dict) -> int:
    """Put a saved run back: weights (all, or a LoRA run's adapter) and optimizer.
    -> the step to continue from."""
    try:
        model.load_state_dict(checkpoint["model"], strict=checkpoint["kind"] != "lora")
        optimizer.load_state_dict(checkpoint["optimizer"])
    except (RuntimeError, ValueError, KeyError) as e:
        raise UserError(f"the saved run does not fit the model it describes ({str(e).splitlines()[0][:200]}): "
                        "the file was altered. Start the run again without --resume") from None
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


FIT_STEPS = 10  # with a time budget: steps timed before the step count is fitted to it


def fit_to_time(s: TrainSettings, done: int, step_seconds: list[float], eval_seconds: float, elapsed: float) -> None:
    """Set s.max_iters so that the run, with a validation every eval_interval steps, ends when
    s.time seconds have passed since it started: first after FIT_STEPS steps (in the warm-up,
    50 steps by default, whose learning rates do not depend on max_iters), then again at every
    validation, from the median step so far (a change of a few steps bends the cosine schedule
    a little, where a first estimate alone can miss by a tenth)."""
    per_step = statistics.median(step_seconds[1:] or step_seconds)  # the first step also warms up the kernels
    left = s.time - elapsed - eval_seconds  # the final validation
    first = not s.time_fitted
    steps = max(1 if first else 0, int(left / (per_step + eval_seconds / s.eval_interval)))  # 0: stop now
    s.max_iters, s.time_fitted = done + steps, True
    if first:
        tqdm.write(f"--time={s.time:g}s: {done + steps:,} steps fitted ({per_step:.3f} s a step, "
                   f"{eval_seconds:.1f} s a validation; fitted again at each validation)")


def cut_log(path: Path, step: int) -> None:
    """Keep the log's rows up to step (and none half-written by a kill)."""
    if not path.exists():
        return
    kept = []
    for line in path.read_text().splitlines(keepends=True):
        try:
            if json.loads(line)["step"] <= step:
                kept.append(line.rstrip("\n") + "\n")
        except (ValueError, KeyError, TypeError):
            pass
    atomic_write({path: lambda f: f.write("".join(kept).encode())})


def weighted_backward(model, batches: list[Batch], ctx, distributed: bool) -> torch.Tensor:
    """Backpropagate one step's loss: the mean over every supervised target of every micro-batch
    of every process. (A mean of micro-batch means would weigh an answer token in a micro-batch
    with few supervised targets more than one in a full micro-batch.) -> this process's mean loss"""
    counts = [(y != IGNORE).sum() for _, y in batches]
    own = torch.stack(counts).sum()
    total, world = own.clone(), 1
    if distributed:
        torch.distributed.all_reduce(total)
        world = torch.distributed.get_world_size()
    loss_sum = torch.zeros((), device=own.device)
    for i, ((x, y), count) in enumerate(zip(batches, counts)):
        # gradients are averaged across processes once per step, at the last micro-batch
        sync = model.no_sync() if distributed and i < len(batches) - 1 else contextlib.nullcontext()
        with sync:
            with ctx:
                _, loss = model(x, y)
            (loss * count * world / total.clamp(min=1)).backward()  # DDP averages over processes: * world sums them
        loss_sum += loss.detach().float() * count
    return loss_sum / own.clamp(min=1)


class RunFiles:
    """What a run writes in out_dir: ckpt.pt and log.jsonl. A new run leaves what out_dir held
    (ckpt.pt, log.jsonl and old_results, with --overwrite) alone until its own first checkpoint
    replaces them: a run that stops early, fails or is killed before then has lost nothing. Till
    then its log waits here. A resumed run first cuts its log back to the step it resumes from,
    so that steps done after the last checkpoint are not logged twice."""

    def __init__(self, out_dir: Path, start_step: int, old_results: tuple[str, ...], writes: bool):
        self.out_dir, self.writes, self.lines = out_dir, writes, []
        self.old_run = [out_dir / n for n in dict.fromkeys(("ckpt.pt", "log.jsonl", *old_results)) if (out_dir / n).exists()]
        self.ours = start_step > 0 or not self.old_run
        if start_step > 0 and writes:
            cut_log(out_dir / "log.jsonl", start_step)

    def log(self, row: dict) -> None:
        if self.writes:
            self.lines.append(json.dumps(row) + "\n")

    def flush(self) -> None:
        if self.ours and self.lines:
            with open(self.out_dir / "log.jsonl", "a") as log:
                log.writelines(self.lines)
            self.lines.clear()

    def checkpoint(self, state: dict) -> None:
        if not self.ours:  # the new run's first checkpoint: only now is the old run replaced
            for path in self.old_run:
                path.unlink(missing_ok=True)
            self.ours = True
        save_checkpoint(state, self.out_dir / "ckpt.pt")
        self.flush()


class CtrlC:
    """Within it, the first Ctrl-C asks the loop to stop after the step in progress (and save);
    a second stops at once, without saving."""

    def __enter__(self) -> CtrlC:
        self.asked = False
        self.previous = signal.signal(signal.SIGINT, self.ask)
        return self

    def ask(self, signum, frame) -> None:
        if self.asked:
            raise KeyboardInterrupt
        self.asked = True
        tqdm.write("Ctrl-C: saving a checkpoint after this step (press again to quit without saving)")

    def __exit__(self, *exc) -> None:
        signal.signal(signal.SIGINT, self.previous)

    def agreed(self, device: str) -> bool:
        """Whether to stop after this step; with several processes, all of them, if any was asked."""
        if not (torch.distributed.is_available() and torch.distributed.is_initialized()):
            return self.asked
        flag = torch.tensor([float(self.asked)], device=device)
        torch.distributed.all_reduce(flag)
        return flag.item() > 0


def train_step(model, optimizer, get_batch: Callable[[str, int, int], Batch], s: TrainSettings, step: int,
               rank: int, world: int, ctx) -> tuple[float, float, int]:
    """One optimizer step. -> (its mean loss, the learning rate, tokens it read)"""
    lr = learning_rate_at(step, s)
    for group in optimizer.param_groups:
        group["lr"] = lr * group.get("lr_scale", 1.0)
    torch.manual_seed(derived_seed(s.seed, "dropout", rank, step))  # CPU and every GPU
    batches = [get_batch("train", step, micro_step * world + rank) for micro_step in range(s.gradient_accumulation_steps)]
    loss = weighted_backward(model, batches, ctx, torch.distributed.is_available() and torch.distributed.is_initialized())
    if s.grad_clip > 0:
        torch.nn.utils.clip_grad_norm_([p for p in model.parameters() if p.requires_grad], s.grad_clip)
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    return loss.item(), lr, sum(x.numel() for x, _ in batches) * world  # .item() waits: the timing is honest


def train(model, optimizer, get_batch: Callable[[str, int, int], Batch], s: TrainSettings, out_dir: Path,
          start_step: int, checkpoint_extra: dict, weights_to_save: Callable[[], dict] | None = None,
          old_results: tuple[str, ...] = ()) -> dict:
    """Run steps start_step .. s.max_iters-1 (with a time budget, as many as fit: fit_to_time);
    save out_dir/ckpt.pt (the weights_to_save, default the whole model; the optimizer; the step;
    checkpoint_extra, whose "config" gets the fitted step count) at every validation, at the end,
    and when Ctrl-C asks to stop. Returns the last validation losses.

    Batches and dropout are functions of (seed, step, process): a resumed run, on a CPU or a
    GPU, draws exactly what the stopped run would have drawn. Under torchrun every process runs
    this loop on its own batches: process `rank` of `world` draws micro-batch number
    micro_step * world + rank, so together they take exactly the batches one process would take
    with world times the gradient accumulation; DistributedDataParallel averages their gradients,
    which weighted_backward scales to the sum. Process 0 alone logs and checkpoints."""
    if start_step >= s.max_iters:
        raise UserError(f"the run in {out_dir} is at step {start_step} of --max_iters={s.max_iters}: "
                        "to continue it, pass a larger --max_iters")
    distributed = torch.distributed.is_available() and torch.distributed.is_initialized()
    rank, world = (torch.distributed.get_rank(), torch.distributed.get_world_size()) if distributed else (0, 1)
    keep_freed_memory()
    ctx = autocast(s.device, s.dtype)
    stepper = torch.nn.parallel.DistributedDataParallel(model) if distributed else model
    files = RunFiles(out_dir, start_step, old_results, writes=rank == 0)
    bar = tqdm(total=s.max_iters, initial=start_step, desc="training", unit="step", dynamic_ncols=True, disable=rank > 0)
    losses, step_seconds, t_start = {}, [], time.perf_counter()
    fits_to_time = bool(s.time) and not s.time_fitted  # a resumed run keeps its saved count
    model.train()
    with CtrlC() as ctrl_c, bar:
        for step in itertools.count(start_step):  # with a time budget, max_iters is fitted after the first steps
            if step >= s.max_iters:
                break
            t0 = time.perf_counter()
            loss, lr, tokens = train_step(stepper, optimizer, get_batch, s, step, rank, world, ctx)
            seconds, done = time.perf_counter() - t0, step + 1
            step_seconds.append(seconds)
            evaluating = done % s.eval_interval == 0 or done == s.max_iters
            fitting = fits_to_time and (done == start_step + FIT_STEPS
                                        or (evaluating and start_step + FIT_STEPS < done < s.max_iters))
            stopping = ctrl_c.agreed(s.device)
            files.log({"step": done, "loss": round(loss, 5), "lr": lr, "seconds": round(seconds, 4), "tokens": tokens,
                       "tokens_per_s": round(tokens / seconds, 1)})
            bar.update(1)
            bar.set_postfix(loss=f"{loss:.3f}", tok_s=f"{tokens / seconds:,.0f}")
            if rank == 0 and (evaluating or fitting):
                t_eval = time.perf_counter()
                losses = estimate_loss(model, get_batch, s.eval_iters, ctx)
                tqdm.write(f"step {done}: train loss {losses['train']:.4f}, val loss {losses['val']:.4f}")
                files.log({"step": done, "train_loss": round(losses["train"], 5), "val_loss": round(losses["val"], 5)})
                if fitting:  # before the checkpoint, which then holds the fitted count: --resume continues it
                    fit_to_time(s, done, step_seconds, time.perf_counter() - t_eval, time.perf_counter() - t_start)
            if rank == 0 and (evaluating or fitting or stopping):
                files.checkpoint({"model": (weights_to_save or model.state_dict)(), "optimizer": optimizer.state_dict(),
                                  "step": done, **checkpoint_extra, "config": {**checkpoint_extra["config"],
                                  "max_iters": s.max_iters, "time_fitted": s.time_fitted}})
            files.flush()
            if fitting:
                share_fitted_count(s, rank)
                bar.total = s.max_iters
                bar.refresh()
            if stopping:
                if rank == 0:
                    tqdm.write(f"stopped at step {done}; checkpoint saved to {out_dir / 'ckpt.pt'}. Continue with --resume.")
                raise SystemExit(130)
    return losses


def share_fitted_count(s: TrainSettings, rank: int) -> None:
    """Process 0 fitted the step count to the time budget: every process takes it."""
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        fitted = torch.tensor([s.max_iters if rank == 0 else 0], device=s.device)
        torch.distributed.all_reduce(fitted, op=torch.distributed.ReduceOp.MAX)
        s.max_iters, s.time_fitted = int(fitted.item()), True
