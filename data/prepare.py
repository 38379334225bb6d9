"""
Turn your own UTF-8 text into a dataset that pretrain.py can train on.

    python data/prepare.py my_book.txt notes/ --name=mytext
    python pretrain.py --dataset=mytext

Each file is one document (a folder is read recursively, in name order, skipping hidden
files). The documents are tokenized with cl100k_base, a compact vocabulary of the corpus's
most frequent tokens is chosen (see tokenizer.py), and the token stream is written as
data/NAME/train.bin and val.bin (uint16 memmaps, the last val_fraction of tokens goes to
val) with meta.json holding the vocabulary.
"""
from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run as a script from anywhere
from cli import UserError, atomic_write, parse_args, run  # noqa: E402
from tokenizer import DOC, Tokenizer, build_vocab, cl100k  # noqa: E402

DATA_DIR = Path(__file__).resolve().parent
TOKENS = np.uint16  # every .bin file: token ids, two bytes each (vocabularies up to 65,536)
OPTIONS = {
    "name": ("", "dataset name: written to data/NAME/ (default: the first input's name)"),
    "out_dir": ("", "write the dataset here instead of data/NAME/"),
    "vocab_size": (8192, "compact vocabulary size: 256 bytes + 4 special tokens + the most frequent tokens (ids are stored as uint16)",
                   "[260, 65536]"),
    "val_fraction": (0.05, "share of the tokens held out for validation", "(0, 1)"),
    "errors": ("strict", "strict: stop at text that is not UTF-8; replace: replace bad bytes with U+FFFD",
               ("strict", "replace")),
    "overwrite": (False, "replace an existing dataset of the same name"),
}


def read_text_files(inputs: list[str], errors: str = "strict") -> list[str]:
    """Read files and folders into a list of documents, with a clear error for anything unusable."""
    if not inputs:
        raise UserError("no input files: give one or more text files or folders, e.g. python data/prepare.py book.txt")
    files: list[Path] = []
    for item in inputs:
        path = Path(item)
        if path.is_dir():
            found = sorted(p for p in path.rglob("*") if p.is_file()
                           and not any(part.startswith(".") for part in p.relative_to(path).parts))
            if not found:
                raise UserError(f"folder {item} holds no files")
            files += found
        elif path.is_file():
            files.append(path)
        else:
            raise UserError(f"no such file or folder: {item}")
    docs = []
    for path in files:
        raw = path.read_bytes()
        if b"\x00" in raw:
            raise UserError(f"{path} looks binary (it has a NUL byte at offset {raw.index(0)}): give text files only")
        try:
            text = raw.decode("utf-8", errors=errors)
        except UnicodeDecodeError as e:
            raise UserError(f"{path} is not UTF-8 text: byte {e.start} ({raw[e.start:e.start + 1]!r}) cannot be decoded. "
                            "Convert it to UTF-8, or pass --errors=replace to replace undecodable bytes") from None
        if text.strip():
            docs.append(text.lstrip("\ufeff"))  # a byte-order mark is not part of the text
    if not docs:
        raise UserError(f"the input ({', '.join(inputs)}) holds no text: every file is empty")
    return docs


def write_dataset(docs: list[str], out_dir: Path, vocab_size: int, val_fraction: float, sources: list[str],
                  vocab: list | None = None, char_tokens: bool = False) -> dict:
    """Tokenize documents, pick the compact vocabulary (or use the one given: another dataset's, so
    that its models read the same tokens; char_tokens: build_vocab's), write train.bin, val.bin and meta.json."""
    if not 0 < val_fraction < 1:
        raise UserError(f"--val_fraction must be between 0 and 1, got {val_fraction}")
    cl100k_docs = cl100k().encode_ordinary_batch(docs, num_threads=os.cpu_count() or 1)
    tokenizer = Tokenizer(vocab or build_vocab(cl100k_docs, vocab_size, char_tokens))
    ids = np.concatenate([np.array([DOC] + tokenizer.from_cl100k_ids(d), dtype=TOKENS) for d in cl100k_docs])
    n_val = max(1, int(len(ids) * val_fraction))
    out_dir.mkdir(parents=True, exist_ok=True)
    meta = {"vocab": tokenizer.vocab, "vocab_size": tokenizer.vocab_size, "documents": len(docs),
            "train_tokens": int(len(ids) - n_val), "val_tokens": n_val, "sources": sources}
    # together and atomically: a crash or a full disk never leaves half a dataset, nor a mix of two
    atomic_write({out_dir / "train.bin": ids[:-n_val].tofile, out_dir / "val.bin": ids[-n_val:].tofile,
                  out_dir / "meta.json": lambda f: f.write(json.dumps(meta).encode())})
    return meta


def read_tokens(path: Path) -> np.memmap:
    """A .bin file of token ids as write_dataset writes them, read from disk as needed."""
    return np.memmap(path, dtype=TOKENS, mode="r")


def main() -> None:
    config, inputs, _ = parse_args(OPTIONS, "python data/prepare.py FILE_OR_FOLDER [...] [--name=NAME]", __doc__,
                                positional="input files")
    docs = read_text_files(inputs, config["errors"])
    name = config["name"] or Path(inputs[0]).resolve().stem  # resolved: "." names the folder, not data/ itself
    if not config["out_dir"] and (name in ("", ".", "..") or "/" in name or "\\" in name):
        raise UserError(f"--name={name!r} is not a folder name: give a plain name (data/NAME is written), or --out_dir")
    out_dir = Path(config["out_dir"]) if config["out_dir"] else DATA_DIR / name
    if (out_dir / "meta.json").exists() and not config["overwrite"]:
        raise UserError(f"{out_dir} already holds a dataset: choose another {'--out_dir' if config['out_dir'] else '--name'}, "
                        "or pass --overwrite to replace it")
    meta = write_dataset(docs, out_dir, config["vocab_size"], config["val_fraction"], inputs)
    print(f"{meta['documents']:,} document{'s' if meta['documents'] != 1 else ''} -> {meta['train_tokens']:,} train and {meta['val_tokens']:,} val tokens, "
          f"vocabulary {meta['vocab_size']:,}, written to {out_dir}/")
    print(f"next: python pretrain.py --dataset={out_dir if config['out_dir'] else name}")


if __name__ == "__main__":
    run(main)
