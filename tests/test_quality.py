"""quality.py: corpora split as claimed, bits per byte as defined, a tiny equal-time comparison."""
import json

import numpy as np
import pytest
import torch

from cli import UserError

from conftest import run_script

FORTUNES = "\n%\n".join(f"Fortune number {i}: the \x1b[33mbest\x1b[m is yet to come, said person {i}." for i in range(120))
FORTUNES += "\n%\n" + "\n%\n".join(["A fortune told twice."] * 30)  # repeated word for word: kept once
CHINESE = "\n%\n".join(f"第{i}首：床前明月光，疑是地上霜。舉頭望明月，低頭思故鄉。" for i in range(120))


def fortunes_dir(tmp_path):
    folder = tmp_path / "fortunes"
    folder.mkdir()
    (folder / "wisdom").write_text(FORTUNES + "\n%\n")
    (folder / "wisdom.dat").write_bytes(b"\x00\x01binary index")
    (folder / "chinese").write_text(CHINESE + "\n%\n")
    return folder


def test_corpora_are_split_before_anything_runs(tmp_path):
    """One fortune per document, terminal colours stripped, Chinese files only in fortunes-zh;
    the held-out test documents never appear in the training or validation tokens."""
    from quality import corpus_documents, prepare_corpus
    from tokenizer import Tokenizer
    folder = fortunes_dir(tmp_path)
    (english, english_files), (chinese, _) = corpus_documents("fortunes", folder), corpus_documents("fortunes-zh", folder)
    assert len(english) == 150 and len(chinese) == 120 and "\x1b" not in "".join(english)
    assert english_files == [str(folder / "wisdom")] and all("明月" in d for d in chinese)
    meta = prepare_corpus("fortunes", tmp_path / "data", folder)
    assert meta["documents"] + meta["test_documents"] == 121  # 120 fortunes and the repeated one, once
    tokenizer = Tokenizer(meta["vocab"])
    seen = tokenizer.decode(np.concatenate([np.fromfile(tmp_path / "data" / f, dtype=np.uint16) for f in ("train.bin", "val.bin")]))
    test = tokenizer.decode(np.fromfile(tmp_path / "data" / "test.bin", dtype=np.uint16))
    held_out = [d for d in set(english) if d in test]
    assert len(held_out) == meta["test_documents"] == 6 and not any(d in seen for d in held_out)
    assert meta["test_bytes"] == sum(len(d.encode()) for d in held_out)
    val = tokenizer.decode(np.fromfile(tmp_path / "data" / "val.bin", dtype=np.uint16))
    assert meta["val_bytes"] == len(val.replace("<|doc|>", "").encode())  # the text's bytes, no separators


def test_variant_groups_and_names():
    from quality import CHANGES, variants
    alone, without = variants(["alone"]), variants(["without", "nanogpt"])
    assert list(alone) == ["default", *CHANGES] and alone["rope"] == ["--rope"]
    assert len(without["all"]) == len(CHANGES) and "--muon" not in without["all-muon"]
    assert all(len(without[f"all-{c}"]) == len(CHANGES) - 1 for c in CHANGES) and "--n_embd=128" in without["nanogpt"]
    assert variants(["fast=--muon --muon_lr_scale=3"]) == {"fast": ["--muon", "--muon_lr_scale=3"]}
    for bad in ("default=--rope", "all-rope=--rope", "a/b=--rope", "=--rope"):
        with pytest.raises(UserError):
            variants([bad])


def test_bits_per_byte_is_the_summed_loss_over_the_bytes(tmp_path):
    from checkpoint import save_checkpoint
    from model import GPT, GPTConfig
    from quality import bits_per_byte
    torch.manual_seed(0)
    model = GPT(GPTConfig(block_size=8, vocab_size=64, n_layer=1, n_head=2, n_embd=16)).eval()
    save_checkpoint({"model": model.state_dict(), "model_config": model.config.__dict__, "vocab": list(range(1000, 1060))},
                    tmp_path / "ckpt.pt")
    tokens = np.random.default_rng(0).integers(0, 60, 21).astype(np.uint16)
    ids = torch.from_numpy(tokens.astype(np.int64))
    nats = 0.0
    with torch.no_grad():  # windows of 8 predictions: 0..7 predict 1..8, 8..15 predict 9..16, 16..19 predict 17..20
        for s, e in ((0, 8), (8, 16), (16, 20)):
            for t in range(s, e):  # each next token from the window's tokens so far, by a plain forward
                nats -= torch.log_softmax(model(ids[None, s:t + 1])[0][0], -1)[ids[t + 1]].item()
    assert abs(bits_per_byte(tmp_path / "ckpt.pt", tokens, 100) - nats / np.log(2) / 100) < 1e-4


def test_a_tiny_comparison_writes_its_table(tmp_path):
    folder = fortunes_dir(tmp_path)
    result = run_script("quality.py", "--corpora=fortunes", "--variants=default,rope", "--minutes=0.15",
                        f"--fortunes_dir={folder}", f"--out_dir={tmp_path / 'q'}",
                        "--pretrain_args=--n_layer=1 --n_head=2 --n_embd=32 --block_size=32 --batch_size=4 "
                        "--eval_iters=1 --eval_interval=20 --dtype=float32", check=True, timeout=200)
    record = json.loads((tmp_path / "q" / "results.json").read_text())
    assert [r["variant"] for r in record["results"]] == ["default", "rope"]
    assert all(0 < r["test_bits_per_byte"] < 8 and r["steps"] > 10 for r in record["results"])
    assert "| rope |" in result.stdout and "% of default)" in result.stdout
    bad = run_script("quality.py", "--corpora=fortunes", "--variants=x=--n_layre=2", f"--fortunes_dir={folder}",
                     f"--out_dir={tmp_path / 'q'}")
    assert bad.returncode == 2 and bad.stderr.count("\n") == 1 and "variant x" in bad.stderr and "n_layer" in bad.stderr


def test_the_quality_tables_show_the_recorded_results():
    """README.md's quality table and docs/quality.md's are what quality.py renders from its record."""
    from cli import readme_markers
    from quality import RECORD, docs_blocks
    begin, end = readme_markers("quality")
    record = json.loads(RECORD.read_text(encoding="utf-8"))
    for doc, block in docs_blocks(record).items():
        assert doc.read_text(encoding="utf-8").split(begin, 1)[1].split(end, 1)[0] == "\n" + block
