"""
Checkpoints: one file per run holding the model config and weights, the vocabulary, and (for
a training run) the optimizer state, step, settings and RNG state needed to resume exactly.
Written atomically; read with weights_only=True, so that no file can run code as it loads.
"""
from __future__ import annotations

import os
from pathlib import Path

import torch

from cli import UserError
from model import GPT, GPTConfig
from tokenizer import Tokenizer


def save_checkpoint(checkpoint: dict, path: Path) -> None:
    """Write to a temporary file beside the target, flush it to disk, then rename over the
    target: a crash at any moment leaves the old checkpoint or the new one, never half of one."""
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "wb") as f:
        torch.save(checkpoint, f)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def load_checkpoint(path: str | Path, required: tuple[str, ...] = ("model", "model_config")) -> dict:
    """Load a checkpoint (or, with other required keys, a LoRA adapter) written by this project.
    weights_only=True: tensors and plain values only, so a file from elsewhere cannot run code."""
    path = Path(path)
    if path.is_dir():
        path = path / "ckpt.pt"
    if not path.is_file():
        raise UserError(f"no checkpoint at {path}: run python pretrain.py first, or point --ckpt at one")
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # truncated, corrupt, not a checkpoint, or pickled code that weights_only refuses
        raise UserError(f"{path} cannot be read as a checkpoint ({type(e).__name__}: {str(e).splitlines()[0][:200]}). "
                        "It may be truncated or corrupt: train it again or use another file") from None
    if not isinstance(checkpoint, dict) or any(key not in checkpoint for key in required):
        raise UserError(f"{path} is not a nanoInstruct {'checkpoint' if 'model' in required else 'LoRA adapter'} "
                        f"(it lacks {', '.join(k for k in required if not isinstance(checkpoint, dict) or k not in checkpoint)})")
    return checkpoint


def load_model(checkpoint: dict, device: str = "cpu", **config_changes) -> tuple[GPT, Tokenizer]:
    """The model and tokenizer a checkpoint describes, in eval mode. config_changes may set
    what does not change the weights' shapes (dropout, for fine-tuning)."""
    try:
        model = GPT(GPTConfig(**{**checkpoint["model_config"], **config_changes}))
        model.load_state_dict(checkpoint["model"])
    except (TypeError, RuntimeError) as e:
        raise UserError(f"the checkpoint's weights do not match its model config ({str(e).splitlines()[0][:200]}): "
                        "the file was altered or comes from another program") from None
    return model.to(device).eval(), Tokenizer(checkpoint["vocab"])
