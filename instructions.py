"""
Instruction data: JSONL files of USER/AI examples -> (token ids, loss mask) per example, every
bad line reported with its file and line; then batches of examples of similar length, whose
targets count only where the mask says (the AI's reply and its [END]).

Two shapes, one example per line:
    {"instruction": "...", "input": "...", "output": "..."}               (Alpaca; input optional)
    {"messages": [{"role": "user", "content": "..."}, {"role": "assistant", "content": "..."}, ...]}
"""
from __future__ import annotations

import json

import torch

from cli import UserError, read_lines
from model import IGNORE
from trainer import batch_generator, text_windows


def parse_example(row) -> list[tuple[str, str]]:
    """One JSONL row -> [(user, assistant), ...]; raises ValueError saying what is wrong."""
    if not isinstance(row, dict):
        raise ValueError(f"expected a JSON object, got {type(row).__name__}")
    if "messages" in row:
        messages = row["messages"]
        if not isinstance(messages, list) or not messages:
            raise ValueError('"messages" must be a non-empty list')
        turns, expected = [], "user"
        for i, m in enumerate(messages):
            if not isinstance(m, dict) or "role" not in m or "content" not in m:
                raise ValueError(f'message {i + 1} must be an object with "role" and "content"')
            if m["role"] not in ("user", "assistant"):
                raise ValueError(f'message {i + 1} has unknown role {m["role"]!r} (only "user" and "assistant")')
            if m["role"] != expected:
                raise ValueError(f'message {i + 1} is {m["role"]!r} where {expected!r} was expected: turns alternate, user first')
            if not isinstance(m["content"], str) or not m["content"].strip():
                raise ValueError(f'message {i + 1} has empty or non-text "content"')
            if expected == "user":
                turns.append((m["content"], None))
            else:
                turns[-1] = (turns[-1][0], m["content"])
            expected = "assistant" if expected == "user" else "user"
        if turns[-1][1] is None:
            raise ValueError("the conversation does not end with an assistant turn")
        return turns
    if "instruction" in row or "output" in row:
        for key in ("instruction", "output"):
            if not isinstance(row.get(key), str) or not row.get(key, "").strip():
                raise ValueError(f'"{key}" is missing, empty or not text')
        extra = row.get("input", "")
        if not isinstance(extra, str):
            raise ValueError('"input" must be text')
        return [(row["instruction"] + ("\n\n" + extra if extra.strip() else ""), row["output"])]
    raise ValueError('neither "messages" nor "instruction"/"output" found')


def load_instructions(paths: list[str], tokenizer, block_size: int, skip_bad: bool, train_on_prompt: bool):
    """All examples of the files as (ids, loss_mask); every bad line reported with file and line."""
    examples, problems = [], []
    for path in paths:
        for number, line in enumerate(read_lines(path, "instruction file"), 1):
            if not line.strip():
                continue  # blank lines separate nothing in JSONL; they are not examples
            try:
                try:
                    row = json.loads(line)
                except json.JSONDecodeError as e:
                    raise ValueError(f"invalid JSON ({e.msg} at column {e.colno})") from None
                except RecursionError:
                    raise ValueError("JSON nested too deep to read") from None
                ids, mask = tokenizer.encode_chat(parse_example(row), train_on_prompt)
                if len(ids) - 1 > block_size:
                    raise ValueError(f"the example is {len(ids)} tokens, longer than the model's context ({block_size + 1})")
                examples.append((ids, mask))
            except ValueError as e:
                problems.append(f"{path}:{number}: {e}")
    if problems and not skip_bad:
        shown = "\n  ".join(problems[:10]) + (f"\n  ... and {len(problems) - 10} more" if len(problems) > 10 else "")
        raise UserError(f"{len(problems)} bad line(s) in the instruction data:\n  {shown}\n"
                        "Fix them, or pass --skip_bad_lines to train without them.")
    if problems:
        print(f"skipped {len(problems)} bad line(s); the first: {problems[0]}")
    if not examples:
        raise UserError(f"no examples in {', '.join(paths)}")
    return examples


def length_batches(lengths: list[int], batch_size: int, generator) -> list[list[int]]:
    """Random batches of examples of similar length: shuffle, sort each pool of 16 batches' worth
    by length, cut it into batches, shuffle the batches. Next to no padding, and a batch still
    mixes all kinds of examples (sorting the whole set would fill a batch with near-copies)."""
    order = torch.randperm(len(lengths), generator=generator).tolist()
    pool = 16 * batch_size
    batches = []
    for start in range(0, len(order), pool):
        chunk = sorted(order[start:start + pool], key=lambda i: lengths[i])
        batches += [chunk[i:i + batch_size] for i in range(0, len(chunk), batch_size)]
    return [batches[i] for i in torch.randperm(len(batches), generator=generator).tolist()]


def collate(examples: list, indices: list[int], device: str):
    """Inputs and targets of a batch; a target counts where the loss mask of its token is 1."""
    width = max(len(examples[i][0]) for i in indices) - 1
    x = torch.zeros(len(indices), width, dtype=torch.long)
    y = torch.full((len(indices), width), IGNORE, dtype=torch.long)
    for row, i in enumerate(indices):
        ids, mask = examples[i]
        x[row, :len(ids) - 1] = torch.tensor(ids[:-1])
        y[row, :len(ids) - 1] = torch.tensor([t if m else IGNORE for t, m in zip(ids[1:], mask[1:])])
    return x.to(device), y.to(device)


class Batches:
    """The batches of a fine-tuning run, for trainer.train's get(split, step, micro_step): the
    examples split into training and validation once (by seed); each epoch a new random order
    of length-grouped training batches, a function of (seed, epoch) alone, so that a resumed run
    draws what the stopped one would have; for evaluation (step -1), the same batches every time.
    micro_steps: micro-batches per step over every process (accumulation times processes).
    replay: (pretraining tokens, rows): each training batch gets that many rows of pretraining
    text as wide as it, every token a target, so that the model keeps continuing what it read."""

    def __init__(self, examples: list, val_fraction: float, batch_size: int, seed: int, micro_steps: int, device: str,
                 replay: tuple | None = None):
        permutation = torch.randperm(len(examples), generator=torch.Generator().manual_seed(seed)).tolist()
        n_val = int(len(examples) * val_fraction) if len(examples) >= 20 else 0
        val = [examples[i] for i in permutation[:n_val]] or examples  # too few to split: validate on all
        self.data = {"train": [examples[i] for i in permutation[n_val:]], "val": val}
        self.lengths = {split: [len(ids) for ids, _ in rows] for split, rows in self.data.items()}
        self.batch_size, self.seed, self.micro_steps, self.device, self.replay = batch_size, seed, micro_steps, device, replay
        self.fixed = {split: self.shuffled(split, -1) for split in self.data}
        self.epoch, self.order = -1, []
        self.train_tokens = sum(len(ids) - 1 for ids, _ in self.data["train"])

    def get(self, split: str, step: int, micro_step: int):
        if step < 0:  # evaluation: the examples alone (the validation loss is the replies', without replay)
            batches = self.fixed[split]
            return collate(self.data[split], batches[micro_step % len(batches)], self.device)
        index = step * self.micro_steps + micro_step  # micro_step counts every process's
        epoch = index // len(self.fixed["train"])
        if epoch != self.epoch:
            self.epoch, self.order = epoch, self.shuffled("epoch", epoch)
        x, y = collate(self.data["train"], self.order[index % len(self.order)], self.device)
        if self.replay is None:
            return x, y
        tokens, rows = self.replay
        rx, ry = text_windows(tokens, rows, x.shape[1], batch_generator(self.seed, "replay", step, micro_step))
        return torch.cat([x, rx.to(self.device)]), torch.cat([y, ry.to(self.device)])

    def shuffled(self, name: str, index: int) -> list[list[int]]:
        """The batches of a split ("epoch": the training split's, for that epoch), drawn by (seed, name, index)."""
        return length_batches(self.lengths["train" if name == "epoch" else name], self.batch_size,
                              batch_generator(self.seed, name, index))
