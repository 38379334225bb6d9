"""
The machine a run uses: which device, which precision, how many CPU threads, the C
allocator's setting that keeps freed memory for the next step, and joining the other processes
under torchrun.
"""
from __future__ import annotations

import contextlib
import ctypes
import os
import sys
import time

import torch

from cli import UserError


def choose_device(device: str) -> str:
    """--device (already one of cli.DEVICE's forms) -> a device this machine has."""
    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise UserError(f"--device={device}, but this machine has no CUDA GPU (torch.cuda.is_available() is False): use --device=cpu")
    if device.startswith("cuda:") and int(device[5:]) >= torch.cuda.device_count():
        raise UserError(f"--device={device}, but this machine has {torch.cuda.device_count()} GPU(s), cuda:0 and up")
    if device == "mps" and not torch.backends.mps.is_available():
        raise UserError("--device=mps, but this machine has no Apple GPU: use --device=cpu")
    return device


def set_threads(threads: int) -> None:
    """CPU threads for torch's kernels; 0 keeps torch's default (one per core)."""
    if threads > 0:
        torch.set_num_threads(threads)


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


def wait_for(done, what: str, minutes: float = 30) -> None:
    """Poll done() once a second; a one-line error after minutes."""
    deadline = time.monotonic() + 60 * minutes
    while not done():
        if time.monotonic() > deadline:
            raise UserError(f"waited {minutes:g} minutes for {what}: see the first process's output")
        time.sleep(1)


def leave_distributed() -> None:
    """Leave the process group together: the others wait while process 0 checkpoints, since a
    process that tears its connections down while a peer is still busy can abort (gloo, under load).
    The processes other than 0 have nothing left to write and end here, skipping the interpreter's
    teardown, where one of them once aborted after a finished run (gloo, CI under load)."""
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        rank = torch.distributed.get_rank()
        torch.distributed.barrier()
        torch.distributed.destroy_process_group()
        if rank > 0:
            sys.stdout.flush(), sys.stderr.flush()
            os._exit(0)


def choose_dtype(dtype: str, device: str) -> str:
    """bf16 where the hardware computes it natively (CUDA GPUs of Ampere and later; CPUs with
    AVX-512 BF16 or AMX, where it runs the matmuls several times faster), fp32 elsewhere."""
    if dtype != "auto":
        return dtype
    if device.startswith("cuda"):
        return "bfloat16" if torch.cuda.is_bf16_supported() else "float32"
    return "bfloat16" if torch.cpu._is_avx512_bf16_supported() or torch.cpu._is_amx_tile_supported() else "float32"


def autocast(device: str, dtype: str):
    """Matmuls in bf16, weights and optimizer state in fp32 (mixed precision)."""
    if dtype == "float32":
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.split(":")[0], dtype=torch.bfloat16)


def machine_name() -> str:
    """The CPU's model name (or the platform's processor) and its core count."""
    import platform
    try:
        with open("/proc/cpuinfo") as f:
            name = next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        name = platform.processor() or platform.machine()
    return f"{name}, {os.cpu_count()} cores"
