"""
Checkpoints: what each kind of file holds, saving it atomically, and reading it back with
weights_only=True, so that no file can run code as it loads. Every file holds the vocabulary,
and all but the adapter the model's config and weights ("model", "model_config", "vocab"):

    ckpt.pt of a run     + "optimizer", "step", "config" (its settings), "kind": what resumes it
                           (RUN_KINDS); pretraining adds "dataset", fine-tuning "base_path", and
                           a LoRA run keeps only the adapter's tensors in "model"
    adapter.pt           "lora" (the A and B tensors), "lora_config", "base_path" and
                           "base_fingerprint" (the base it needs), "vocab"  (finetune.save_and_evaluate)
    merged.pt            a LoRA run folded into plain weights, "kind": "merged"  (lora.merged_checkpoint)
"""
from __future__ import annotations

import pickle
from pathlib import Path

import torch

from cli import UserError, atomic_write
from model import GPT, GPTConfig
from tokenizer import Tokenizer


RUN_KINDS = {"pretrain": ("a pretraining run", "python pretrain.py --resume --out_dir={}"),
             "sft": ("a full fine-tuning run", "python finetune.py --resume --out_dir={}"),
             "lora": ("a LoRA fine-tuning run", "python finetune.py --resume --out_dir={}")}
RUN_KEYS = ("model", "model_config", "vocab", "optimizer", "step", "config", "kind")  # what a resumable run saves


def save_checkpoint(checkpoint: dict, path: Path) -> None:
    """Atomically: a crash or a full disk leaves the old checkpoint, never half of a new one."""
    atomic_write({path: lambda f: torch.save(checkpoint, f)})


def run_file(path: str | Path, adapter: bool) -> Path:
    """path, or for a run's folder the file it ends with: ckpt.pt, or a LoRA run's adapter.pt once
    it has ended (before that, its ckpt.pt: load_checkpoint then says how the run goes on)."""
    path = Path(path)
    if not path.is_dir():
        return path
    ended = adapter and ((path / "adapter.pt").exists() or not (path / "ckpt.pt").exists())
    return path / ("adapter.pt" if ended else "ckpt.pt")


def load_checkpoint(path: str | Path, required: tuple[str, ...] = ("model", "model_config", "vocab"),
                    option: str = "") -> dict:
    """Load a checkpoint (or, with other required keys, a LoRA adapter) written by this project.
    weights_only=True: tensors and plain values only, so a file from elsewhere cannot run code.
    option: the command-line option that names this file, for the messages."""
    adapter = "lora" in required
    path = run_file(path, adapter)
    if not path.is_file() and adapter:
        raise UserError(f"no adapter at {path}: python finetune.py --lora writes it when its run ends "
                        f"(a stopped run goes on with python finetune.py --resume --out_dir={path.parent})")
    if not path.is_file():
        raise UserError(f"no checkpoint at {path}: run python pretrain.py first"
                        + (f", or give the path of one with {option}" if option else ""))
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        if "weights only" not in str(e).lower():
            raise UserError(f"{path} cannot be read as a checkpoint (it may be truncated or corrupt): "
                            "train it again or use another file") from None
        raise UserError(f"{path} holds Python objects besides tensors and plain values, and loading such a file "
                        "could run code: refused. Use a checkpoint written by this project") from None
    except Exception as e:  # truncated, corrupt, empty, not a checkpoint at all
        detail = f"{type(e).__name__}: {str(e).splitlines()[0][:200]}" if str(e).strip() else type(e).__name__
        raise UserError(f"{path} cannot be read as a checkpoint ({'an empty file' if path.stat().st_size == 0 else detail}). "
                        "It may be truncated or corrupt: train it again or use another file") from None
    if option and isinstance(checkpoint, dict):  # a file chosen on the command line: the other kind of file, by mistake
        if not adapter and ("lora" in checkpoint or checkpoint.get("kind") == "lora"):
            raise UserError(f"{path} is {'a LoRA adapter' if 'lora' in checkpoint else 'a LoRA run (its adapter is adapter.pt)'}, "
                            f"not a model: give the adapter with --adapter, and its base with {option}")
        if adapter and checkpoint.get("kind") == "lora":
            raise UserError(f"{path} is a LoRA run that has not ended: its adapter.pt is written when it does (it goes on "
                            f"with python finetune.py --resume --out_dir={path.parent})")
        if adapter and "model" in checkpoint:
            raise UserError(f"{path} is a model, not a LoRA adapter: give it with --ckpt (or --base)")
    missing = [key for key in required if not isinstance(checkpoint, dict) or key not in checkpoint]
    if missing:
        raise UserError(f"{path} is not a nanoInstruct {'checkpoint' if 'model' in required else 'LoRA adapter'}, "
                        f"or it was altered (it lacks {', '.join(missing)})")
    return checkpoint


def load_model(checkpoint: dict, device: str = "cpu", **config_changes) -> tuple[GPT, Tokenizer]:
    """The model and tokenizer a checkpoint describes, in eval mode. config_changes may set
    what does not change the weights' shapes (dropout, for fine-tuning)."""
    try:
        model = GPT(GPTConfig(**{**checkpoint["model_config"], **config_changes}))
        model.load_state_dict(checkpoint["model"])
        tokenizer = Tokenizer(checkpoint["vocab"])
    except (TypeError, RuntimeError, ValueError, KeyError, IndexError, OverflowError, AssertionError) as e:
        raise UserError(f"the checkpoint's weights do not match its model config ({str(e).splitlines()[0][:200]}): "
                        "the file was altered or comes from another program") from None
    return model.to(device).eval(), tokenizer
