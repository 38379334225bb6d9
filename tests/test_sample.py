"""Generation: the KV cache changes nothing but speed; sampling options; the chat and text continuation."""
import os
import shlex
import subprocess
import sys

import pytest
import torch

from checkpoint import load_checkpoint, load_model
from conftest import ROOT, run_script
from model import GPT, GPTConfig
from generation import Int8Linear, for_generation, generate, pick_token
from tokenizer import utf8_pending
from machine import choose_dtype


def random_model(block_size=16):
    torch.manual_seed(0)
    return GPT(GPTConfig(block_size=block_size, vocab_size=64, n_layer=2, n_head=2, n_embd=32)).eval()


def test_greedy_with_cache_equals_without_across_a_sliding_context():
    model = random_model(block_size=16)
    prompt = [1, 5, 9, 2, 7]
    with_cache = list(generate(model, prompt, 40, use_cache=True))  # 45 tokens through a 16-token context
    without = list(generate(model, prompt, 40, use_cache=False))
    assert with_cache == without and len(with_cache) == 40


def test_generation_stops_at_the_stop_token():
    model = random_model()
    first = next(generate(model, [1, 2, 3], 10))
    assert list(generate(model, [1, 2, 3], 10, stop_id=first)) == [first]


def test_padding_rows_of_the_vocabulary_are_never_generated():
    model = random_model()
    g = torch.Generator().manual_seed(0)
    tokens = list(generate(model, [1, 2, 3], 200, temperature=2.0, generator=g, vocab_size=7))
    assert max(tokens) < 7 and len(set(tokens)) > 3


def test_sampling_options():
    logits = torch.tensor([0.1, 3.0, 0.2, 2.9])
    g = lambda: torch.Generator().manual_seed(0)  # noqa: E731
    assert pick_token(logits, 0.0, 0, 1.0, g()) == 1  # greedy
    assert all(pick_token(logits, 1.0, 1, 1.0, g()) == 1 for _ in range(5))  # top-k 1 is greedy
    assert {pick_token(logits, 5.0, 2, 1.0, torch.Generator().manual_seed(s)) for s in range(50)} == {1, 3}
    assert {pick_token(logits, 5.0, 0, 0.3, torch.Generator().manual_seed(s)) for s in range(50)} <= {1, 3}
    same_seed = [pick_token(logits, 2.0, 0, 1.0, g()) for _ in range(2)]
    assert same_seed[0] == same_seed[1]


@pytest.mark.parametrize("text", ["臺灣最高的山是", "The highest mountain in Japan is"])
def test_raw_continuation_loads_a_pretrained_checkpoint(tiny_checkpoint, text):
    result = run_script("sample.py", "--raw", f"--ckpt={tiny_checkpoint}", f"--prompt={text}", "--max_new_tokens=8",
                        "--dtype=float32", check=True)
    assert result.stdout.startswith(text) and len(result.stdout.strip()) > len(text)
    model, tokenizer = load_model(load_checkpoint(tiny_checkpoint))
    expected = tokenizer.decode(generate(model, tokenizer.encode_document(text), 8, tokenizer=tokenizer, chat=False))
    assert result.stdout.rstrip("\n") == text + expected  # an English continuation keeps the space it starts with


def test_piped_chat_gives_one_reply_per_line(tiny_checkpoint):
    result = run_script("sample.py", f"--ckpt={tiny_checkpoint}", "--max_new_tokens=5",
                        input="台灣最高的山是哪座？\n/reset\n你是誰？\n", check=True)
    lines = result.stdout.splitlines()
    assert len(lines) == 3 and lines[1] == "(conversation cleared)"


def test_a_reader_that_leaves_early_is_no_error(tiny_checkpoint):
    """python sample.py ... | head: the reader goes before the replies are written; sample.py stops quietly."""
    command = f"{shlex.quote(sys.executable)} sample.py --ckpt={shlex.quote(str(tiny_checkpoint))} --max_new_tokens=5 | true"
    result = subprocess.run(["bash", "-c", command], cwd=ROOT, input="你是誰？\n" * 20, capture_output=True, text=True,
                            timeout=120)
    assert "Traceback" not in result.stderr and "BrokenPipe" not in result.stderr and "bug" not in result.stderr


def test_a_closed_input_is_no_input(tiny_checkpoint):
    command = f"{shlex.quote(sys.executable)} sample.py --ckpt={shlex.quote(str(tiny_checkpoint))} --max_new_tokens=3 <&-"
    result = subprocess.run(["bash", "-c", command], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0 and result.stdout == "" and "Traceback" not in result.stderr


def test_an_output_that_cannot_show_chinese_is_a_clear_error(tiny_checkpoint):
    result = subprocess.run([sys.executable, "sample.py", f"--ckpt={tiny_checkpoint}", "--raw", "--prompt=臺灣",
                             "--max_new_tokens=2"], cwd=ROOT, capture_output=True, text=True, timeout=120,
                            env={**os.environ, "PYTHONIOENCODING": "latin-1"})
    assert result.returncode == 2 and "cannot show this text: set the terminal to UTF-8" in result.stderr
    assert "Traceback" not in result.stderr


def test_piped_input_that_is_not_utf8_is_a_clear_error(tiny_checkpoint):
    result = run_script("sample.py", f"--ckpt={tiny_checkpoint}", "--max_new_tokens=2", input=b"ok\n\xff\n", text=False)
    assert result.returncode == 2 and b"the piped input is not UTF-8 text (byte 3" in result.stderr
    assert b"Traceback" not in result.stderr


def test_missing_checkpoint_is_a_clear_error(tmp_path):
    result = run_script("sample.py", f"--ckpt={tmp_path}/none.pt", "--prompt=hi")
    assert result.returncode == 2 and "no checkpoint" in result.stderr and "Traceback" not in result.stderr


def test_an_empty_prompt_is_a_clear_error(tiny_checkpoint):
    result = run_script("sample.py", f"--ckpt={tiny_checkpoint}", "--prompt=  ")
    assert result.returncode == 2 and result.stderr.startswith("error: --prompt is empty")


def test_an_unknown_weight_type_is_a_clear_error(tiny_checkpoint):
    result = run_script("sample.py", f"--ckpt={tiny_checkpoint}", "--prompt=hi", "--dtype=int4")
    assert result.returncode == 2 and "--dtype must be one of auto, int8, bfloat16, float32" in result.stderr
    assert "Traceback" not in result.stderr


def test_full_context_drops_the_oldest_turns_and_says_so(tiny_checkpoint):
    # the tiny model's context is 32 tokens: the second question no longer fits beside the first turn
    result = run_script("sample.py", f"--ckpt={tiny_checkpoint}", "--max_new_tokens=6",
                        input="日本的首都是哪裡？\n世界最高的山是哪座？\n", check=True)
    assert len(result.stdout.splitlines()) == 2
    assert "the oldest turn is forgotten" in result.stderr


def test_a_prompt_longer_than_the_context_is_a_clear_error(tiny_checkpoint):
    for args, said in ((["--prompt=" + "很長的問題" * 20], "with the template"), (["--raw", "--prompt=" + "很長的文字" * 20], "the text is")):
        result = run_script("sample.py", f"--ckpt={tiny_checkpoint}", *args)
        assert result.returncode == 2 and "context holds 32" in result.stderr and "Traceback" not in result.stderr
        assert said in result.stderr and ("template" in result.stderr) == ("--raw" not in args)  # raw text has no template


def test_bf16_generation_weights_give_nearly_the_same_logits(tiny_checkpoint):
    model, tokenizer = load_model(load_checkpoint(tiny_checkpoint))
    ids = torch.tensor([tokenizer.encode_document("臺灣最高的山是")])
    exact = model(ids)[0]
    half = for_generation(model, "cpu", "bfloat16")
    assert next(half.parameters()).dtype == torch.bfloat16
    assert ((half(ids)[0] - exact).norm() / exact.norm()).item() < 0.02


@pytest.mark.skipif(choose_dtype("auto", "cpu") != "bfloat16", reason="int8 needs a CPU with bf16")
def test_int8_weights_the_default_on_such_a_cpu_give_nearly_the_same_outputs(tiny_checkpoint):
    torch.manual_seed(0)
    linear = torch.nn.Linear(64, 96, bias=False)
    x = torch.randn(3, 64)
    exact, quantized = linear(x), Int8Linear(linear)(x)
    assert ((quantized - exact).norm() / exact.norm()).item() < 0.02
    plain = run_script("sample.py", "--raw", f"--ckpt={tiny_checkpoint}", "--prompt=臺灣", "--max_new_tokens=6",
                       "--dtype=float32", check=True)
    int8 = run_script("sample.py", "--raw", f"--ckpt={tiny_checkpoint}", "--prompt=臺灣", "--max_new_tokens=6", check=True)
    assert int8.stdout.startswith("臺灣") and "int8" in int8.stderr and len(int8.stdout) >= len("臺灣") + 1
    assert plain.stdout.startswith("臺灣")


def test_sampled_text_is_always_valid_utf8_and_never_a_marker():
    """Byte-level tokens sampled at random would break characters; the rule never lets them."""
    from tokenizer import AI, DOC, END, USER, Tokenizer, build_vocab, cl100k
    corpus = ["臺灣最高的山是玉山。世界最高的山是聖母峰。🇹🇼", "The highest mountain in the world is Mount Everest."]
    tokenizer = Tokenizer(build_vocab([cl100k().encode_ordinary(t) for t in corpus], 300))
    torch.manual_seed(0)
    model = GPT(GPTConfig(block_size=32, vocab_size=320, n_layer=1, n_head=2, n_embd=32)).eval()
    prompt = tokenizer.encode_chat([("你是誰？", None)])[0]
    unconstrained = list(generate(model, prompt, 300, temperature=3.0, generator=torch.Generator().manual_seed(1),
                                  vocab_size=tokenizer.vocab_size))
    with pytest.raises(UnicodeDecodeError):  # without the rule, random bytes do not decode
        tokenizer.decode_bytes(t for t in unconstrained if t < 256).decode("utf-8")
    for seed in range(5):
        tokens = list(generate(model, prompt, 300, temperature=3.0, generator=torch.Generator().manual_seed(seed),
                               tokenizer=tokenizer))
        assert not {DOC, USER, AI} & set(tokens)
        text = [t for t in tokens if t != END]
        finished = tokens[-1] == END
        assert not finished or END not in tokens[:-1]
        data = tokenizer.decode_bytes(text)
        if finished:
            data.decode("utf-8")  # a whole reply decodes strictly: no U+FFFD possible
        else:
            assert utf8_pending(data) is not None  # cut by max_new_tokens: still a valid prefix
