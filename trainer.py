"""
The training loop that pretraining and fine-tuning share, and what goes with it: AdamW with a
warm-up and cosine schedule, starting or resuming a run, checkpoints, the step log, Ctrl-C.

Fine-tuning is pretraining with another start, other batches and a loss mask, so the loop
only needs get_batch(split, step, micro_step) -> (inputs, targets). Batches are a pure
function of the step: a resumed run draws exactly the batches the stopped run would have.
"""
from __future__ import annotations

import contextlib
import hashlib
import json
import math
import os
import signal
import statistics
import time
from pathlib import Path
from typing import Callable

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


def make_optimizer(model: torch.nn.Module, learning_rate: float, weight_decay: float, beta2: float) -> torch.optim.AdamW:
    """AdamW over the trainable parameters. Weight decay only on matrices (Linear layers' and
    LoRA's A and B): decaying LayerNorm gains and biases pulls them toward zero for no benefit,
    and decaying an embedding shrinks the rows of rare tokens between the few steps that update
    them (the output layer shares the token embedding, so it is left out too)."""
    embeddings = {id(p) for m in model.modules() if isinstance(m, torch.nn.Embedding) for p in m.parameters()}
    trainable = [p for p in model.parameters() if p.requires_grad]
    decay = [p for p in trainable if p.dim() >= 2 and id(p) not in embeddings]
    no_decay = [p for p in trainable if p.dim() < 2 or id(p) in embeddings]
    groups = [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    return torch.optim.AdamW(groups, lr=learning_rate, betas=(0.9, beta2), foreach=True)


def learning_rate_at(step: int, config: dict) -> float:
    """Linear warm-up, then cosine decay to min_lr at max_iters."""
    lr, min_lr, warmup, total = config["learning_rate"], config["min_lr"], config["warmup_iters"], config["max_iters"]
    if step < warmup:
        return lr * (step + 1) / warmup
    progress = (step - warmup) / max(1, total - warmup)
    return min_lr + 0.5 * (1 + math.cos(math.pi * min(progress, 1.0))) * (lr - min_lr)


def writable_folder(out_dir: Path) -> None:
    """Make out_dir and check that a file can be written there, before any work is done."""
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
        probe = out_dir / f".write_test_{os.getpid()}"  # one per process: under torchrun all of them check
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as e:
        raise UserError(f"cannot write to --out_dir={out_dir} ({e.strerror}): choose a folder you can write to") from None


def start_or_resume(config: dict, typed: set[str], out_dir: Path, fixed_keys: tuple[str, ...],
                    kinds: tuple[str, ...]) -> tuple[dict, dict | None]:
    """With --resume: the run of one of these kinds saved in out_dir, its settings with what the
    user typed now on top (say, a larger --max_iters), except fixed_keys, which cannot change.
    Without: refuse to start over a run that out_dir already holds, unless --overwrite (the old
    run is replaced only when the new one saves its first checkpoint: see train).
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
    saved = checkpoint["config"]
    for key in fixed_keys:
        if key in typed and config[key] != saved.get(key):
            raise UserError(f"--{key} cannot change when resuming (the run has {saved.get(key)})")
    return {**saved, **{k: config[k] for k in typed}, "resume": True}, checkpoint


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


def fit_to_time(config: dict, done: int, step_seconds: list[float], eval_seconds: float, elapsed: float) -> None:
    """Set config["max_iters"] so that the run, with a validation every eval_interval steps, ends
    when config["time"] seconds have passed since it started: first after FIT_STEPS steps (in the
    warm-up, 50 steps by default, whose learning rates do not depend on max_iters), then again at
    every validation, from the median step so far (a change of a few steps bends the cosine
    schedule a little, where a first estimate alone can miss by a tenth)."""
    per_step = statistics.median(step_seconds[1:] or step_seconds)  # the first step also warms up the kernels
    left = config["time"] - elapsed - eval_seconds  # the final validation
    first = not config.get("time_fitted")
    steps = max(1 if first else 0, int(left / (per_step + eval_seconds / config["eval_interval"])))  # 0: stop now
    config.update(max_iters=done + steps, time_fitted=True)
    if first:
        tqdm.write(f"--time={config['time']:g}s: {done + steps:,} steps fitted ({per_step:.3f} s a step, "
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


def train(model, optimizer, get_batch: Callable[[str, int, int], Batch], config: dict, out_dir: Path,
          start_step: int = 0, checkpoint_extra: dict | None = None, weights_to_save: Callable[[], dict] | None = None,
          old_results: tuple[str, ...] = ()) -> dict:
    """Run steps start_step .. max_iters-1 (with config["time"], a budget in seconds: as many as fit
    in it, fit_to_time); save out_dir/ckpt.pt at every evaluation, at the end,
    and when Ctrl-C asks to stop (after the step in progress). weights_to_save gives the tensors
    to keep (default: the whole model; LoRA keeps only the adapter). Returns the last losses.

    A new run leaves what out_dir held (ckpt.pt, log.jsonl and old_results, with --overwrite)
    alone until its own first checkpoint replaces them: a run that stops early, fails or is
    killed before then has lost nothing. A resumed run first cuts its log back to the step it
    resumes from, so that steps done after the last checkpoint are not logged twice.

    Batches and dropout are functions of (seed, step, process): a resumed run, on a CPU or a
    GPU, draws exactly what the stopped run would have drawn. Under torchrun every process runs
    this loop on its own batches: process `rank` of `world` draws micro-batch number
    micro_step * world + rank, so together they take exactly the batches one process would take
    with world times the gradient accumulation; DistributedDataParallel sums their gradients
    (weighted_backward). Process 0 alone logs and checkpoints."""
    if start_step >= config["max_iters"]:
        raise UserError(f"the run in {out_dir} is at step {start_step} of --max_iters={config['max_iters']}: "
                        "to continue it, pass a larger --max_iters")
    distributed = torch.distributed.is_available() and torch.distributed.is_initialized()
    rank, world = (torch.distributed.get_rank(), torch.distributed.get_world_size()) if distributed else (0, 1)
    main_process = rank == 0
    keep_freed_memory()
    ctx = autocast(config["device"], config["dtype"])
    accum = config["gradient_accumulation_steps"]
    trainable = [p for p in model.parameters() if p.requires_grad]
    ddp_model = torch.nn.parallel.DistributedDataParallel(model) if distributed else model
    # a new run writes nothing over what out_dir holds (an old run, with --overwrite) until its
    # first checkpoint: till then its log waits here
    old_run = [out_dir / name for name in dict.fromkeys(("ckpt.pt", "log.jsonl", *old_results)) if (out_dir / name).exists()]
    run_files_are_ours = start_step > 0 or not old_run
    log_lines: list[str] = []
    if start_step > 0 and main_process:
        cut_log(out_dir / "log.jsonl", start_step)

    def write_log() -> None:
        if run_files_are_ours and log_lines:
            with open(out_dir / "log.jsonl", "a") as log:
                log.writelines(log_lines)
            log_lines.clear()

    def checkpoint_now(step: int) -> None:
        nonlocal run_files_are_ours
        if not run_files_are_ours:  # the new run's first checkpoint: only now is the old run replaced
            for path in old_run:
                path.unlink(missing_ok=True)
            run_files_are_ours = True
        save_checkpoint({"model": (weights_to_save or model.state_dict)(), "optimizer": optimizer.state_dict(), "step": step,
                         "config": config, **(checkpoint_extra or {})}, out_dir / "ckpt.pt")
        write_log()

    stop_requested = False
    def request_stop(signum, frame):
        nonlocal stop_requested
        if stop_requested:  # a second Ctrl-C: stop now, without saving
            raise KeyboardInterrupt
        stop_requested = True
        tqdm.write("Ctrl-C: saving a checkpoint after this step (press again to quit without saving)")
    previous_handler = signal.signal(signal.SIGINT, request_stop)

    def stop_now() -> bool:
        """Whether to stop after this step; with several processes, all of them, if any was asked."""
        if not distributed:
            return stop_requested
        flag = torch.tensor([float(stop_requested)], device=config["device"])
        torch.distributed.all_reduce(flag)
        return flag.item() > 0

    losses = {}
    bar = tqdm(total=config["max_iters"], initial=start_step, desc="training", unit="step", dynamic_ncols=True,
               disable=not main_process)
    model.train()
    t_start, step_seconds = time.perf_counter(), []
    fits_to_time = bool(config.get("time")) and not config.get("time_fitted")  # a resumed run keeps its saved count
    try:
        step = start_step
        while step < config["max_iters"]:  # with a time budget, max_iters is fitted after the first steps
            t0 = time.perf_counter()
            lr = learning_rate_at(step, config)
            for group in optimizer.param_groups:
                group["lr"] = lr
            torch.manual_seed(derived_seed(config["seed"], "dropout", rank, step))  # CPU and every GPU
            batches = [get_batch("train", step, micro_step * world + rank) for micro_step in range(accum)]
            loss = weighted_backward(ddp_model, batches, ctx, distributed)
            if config["grad_clip"] > 0:
                torch.nn.utils.clip_grad_norm_(trainable, config["grad_clip"])
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
            train_loss = loss.item()  # .item() waits for the step to finish: the timing is honest
            seconds = time.perf_counter() - t0
            tokens_per_s = sum(x.numel() for x, _ in batches) * world / seconds
            done = step + 1
            step_seconds.append(seconds)
            evaluating = done % config["eval_interval"] == 0 or done == config["max_iters"]
            fitting = fits_to_time and (done == start_step + FIT_STEPS
                                        or (evaluating and start_step + FIT_STEPS < done < config["max_iters"]))
            stopping = stop_now()
            if main_process:
                log_lines.append(json.dumps({"step": done, "loss": round(train_loss, 5), "lr": lr,
                                             "seconds": round(seconds, 4), "tokens_per_s": round(tokens_per_s, 1)}) + "\n")
                bar.update(1)
                bar.set_postfix(loss=f"{train_loss:.3f}", tok_s=f"{tokens_per_s:,.0f}")
                if evaluating or fitting:
                    t_eval = time.perf_counter()
                    losses = estimate_loss(model, get_batch, config["eval_iters"], ctx)
                    tqdm.write(f"step {done}: train loss {losses['train']:.4f}, val loss {losses['val']:.4f}")
                    log_lines.append(json.dumps({"step": done, "train_loss": round(losses["train"], 5),
                                                 "val_loss": round(losses["val"], 5)}) + "\n")
                    if fitting:  # before the checkpoint, which then holds the fitted count: --resume continues it
                        fit_to_time(config, done, step_seconds, time.perf_counter() - t_eval, time.perf_counter() - t_start)
                    checkpoint_now(done)
                elif stopping:
                    checkpoint_now(done)
                write_log()
            if fitting and distributed:  # process 0 fitted the step count: every process takes it
                fitted = torch.tensor([config["max_iters"] if main_process else 0], device=config["device"])
                torch.distributed.all_reduce(fitted, op=torch.distributed.ReduceOp.MAX)
                config.update(max_iters=int(fitted.item()), time_fitted=True)
            if fitting:
                bar.total = config["max_iters"]
                bar.refresh()
            step += 1
            if stopping:
                bar.close()
                if main_process:
                    print(f"stopped at step {done}; checkpoint saved to {out_dir / 'ckpt.pt'}. Continue with --resume.")
                raise SystemExit(130)
    finally:
        bar.close()
        signal.signal(signal.SIGINT, previous_handler)
    return losses
