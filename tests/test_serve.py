"""The local server: its OpenAI-compatible API gives what generation.generate gives, streamed or not,
to several clients at once; it refuses bad requests with a JSON error and stays up; it stops
generating when a client leaves, and on Ctrl-C."""
import http.client
import json
import math
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import torch

from checkpoint import save_checkpoint
from conftest import ROOT
from model import GPT, GPTConfig
from generation import generate
from serve import MAX_BODY, Server
from tokenizer import END, Tokenizer

QUESTIONS = ["台灣最高的山是哪座？", "Who are you?", "你是誰？", "日本的首都是哪裡？", "寫一首詩", "What is 2+2?"]


def write_model(path: Path, kind: str, seed: int) -> None:
    """A random model with the byte-level tokenizer: gibberish replies, but the server must give
    exactly the ones generate gives."""
    torch.manual_seed(seed)
    tokenizer = Tokenizer([])
    config = GPTConfig(block_size=64, vocab_size=tokenizer.vocab_size, n_layer=2, n_head=2, n_embd=32)
    path.parent.mkdir(parents=True)
    save_checkpoint({"model": GPT(config).state_dict(), "model_config": config.__dict__, "vocab": [], "kind": kind}, path)


@pytest.fixture(scope="module")
def models_dir(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("out")
    write_model(folder / "pretrain" / "ckpt.pt", "pretrain", 0)
    write_model(folder / "sft" / "ckpt.pt", "sft", 1)
    rows = [{"step": s, "loss": 5 - s / 10} for s in range(1, 21)] + [{"step": 20, "train_loss": 3.1, "val_loss": 3.2}]
    (folder / "sft" / "log.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return folder


@pytest.fixture(scope="module")
def server(models_dir):
    server = Server(("127.0.0.1", 0), models_dir, "cpu", "float32")
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


def request(server, method: str, path: str, body=None, raw: bytes | None = None):
    connection = http.client.HTTPConnection(*server.server_address[:2], timeout=30)
    data = raw if raw is not None else (json.dumps(body).encode() if body is not None else None)
    connection.request(method, path, body=data, headers={"Content-Type": "application/json"})
    response = connection.getresponse()
    return response.status, response.getheader("Content-Type"), response.read().decode()


def chat(server, body) -> dict:
    status, _, text = request(server, "POST", "/v1/chat/completions", body)
    assert status == 200, text
    return json.loads(text)


def stream(server, body) -> list[dict]:
    status, content_type, text = request(server, "POST", "/v1/chat/completions", {**body, "stream": True})
    assert status == 200 and content_type.startswith("text/event-stream"), text
    events = [line[len("data: "):] for line in text.split("\n\n") if line]
    assert events[-1] == "[DONE]"
    return [json.loads(e) for e in events[:-1]]


def expected_reply(server, name: str, messages: list[str], max_tokens: int, prefix=(), **options) -> tuple[str, str]:
    """(text, finish reason) as sample.py's generation gives them."""
    model, tokenizer = server.model(name)
    history = list(zip(messages[:-1:2], messages[1::2]))
    ids, _ = tokenizer.chat_prompt(history, messages[-1], model.config.block_size, max_tokens)
    tokens = list(generate(model, ids + list(prefix), max_tokens, stop_id=END, tokenizer=tokenizer, **options))
    ended = tokens[-1:] == [END]
    return tokenizer.decode(list(prefix) + tokens[:len(tokens) - ended]).lstrip(" "), "stop" if ended else "length"


def as_messages(turns: list[str]) -> list[dict]:
    return [{"role": "user" if i % 2 == 0 else "assistant", "content": t} for i, t in enumerate(turns)]


def test_models_are_listed_with_the_fine_tuned_one_first(server, models_dir):
    status, _, text = request(server, "GET", "/v1/models")
    listed = json.loads(text)
    assert status == 200 and listed["object"] == "list"
    assert [(m["id"], m["chat"]) for m in listed["data"]] == [(str(models_dir / "sft" / "ckpt.pt"), True),
                                                              (str(models_dir / "pretrain" / "ckpt.pt"), False)]


def test_one_model_is_retrieved_and_content_may_come_in_parts(server, models_dir):
    name = str(models_dir / "sft" / "ckpt.pt")
    status, _, text = request(server, "GET", f"/v1/models/{name}")
    assert status == 200 and json.loads(text)["id"] == name and request(server, "GET", "/v1/models/x")[0] == 404
    parts = [{"type": "text", "text": "台灣最高"}, {"type": "text", "text": "的山是哪座？"}]
    body = {"messages": [{"role": "developer", "content": "be brief"}, {"role": "user", "content": parts}],
            "max_tokens": 10}
    assert chat(server, body)["choices"][0]["message"]["content"] == expected_reply(server, name, ["台灣最高的山是哪座？"], 10)[0]


def test_a_reply_is_what_generate_gives_streamed_or_not(server, models_dir):
    name = str(models_dir / "sft" / "ckpt.pt")
    turns = ["台灣最高的山是哪座？", "玉山", "Who are you?"]
    text, reason = expected_reply(server, name, turns, 20)
    whole = chat(server, {"model": name, "messages": [{"role": "system", "content": "skipped"}] + as_messages(turns),
                          "max_tokens": 20})
    assert whole["object"] == "chat.completion" and whole["choices"][0]["message"] == {"role": "assistant", "content": text}
    assert whole["choices"][0]["finish_reason"] == reason and whole["usage"]["completion_tokens"] <= 20
    events = stream(server, {"model": name, "messages": as_messages(turns), "max_tokens": 20,
                             "stream_options": {"include_usage": True}})
    assert events[-1]["choices"] == [] and events[-1]["usage"] == whole["usage"]  # the usage chunk, last
    events = events[:-1]
    assert {e["object"] for e in events} == {"chat.completion.chunk"} and len({e["id"] for e in events}) == 1
    assert events[0]["choices"][0]["delta"]["role"] == "assistant"
    assert "".join(e["choices"][0]["delta"].get("content", "") for e in events) == text
    assert events[-1]["choices"][0]["finish_reason"] == reason


def test_sampling_settings_and_seed_are_those_of_generate(server, models_dir):
    name = str(models_dir / "sft" / "ckpt.pt")
    body = {"model": name, "messages": as_messages(["寫一首詩"]), "max_tokens": 30, "temperature": 1.5, "top_p": 0.9,
            "top_k": 40, "seed": 5}
    text, _ = expected_reply(server, name, ["寫一首詩"], 30, temperature=1.5, top_p=0.9, top_k=40,
                             generator=torch.Generator().manual_seed(5))
    assert chat(server, body)["choices"][0]["message"]["content"] == text
    assert chat(server, {**body, "seed": 6})["choices"][0]["message"]["content"] != text


def test_a_tiny_temperature_is_greedy_and_impossible_candidates_are_left_out(server, models_dir):
    name = str(models_dir / "sft" / "ckpt.pt")
    greedy, _ = expected_reply(server, name, ["你是誰？"], 12)
    body = {"model": name, "messages": as_messages(["你是誰？"]), "max_tokens": 12, "temperature": 1e-300}
    assert chat(server, body)["choices"][0]["message"]["content"] == greedy
    # after the first byte of a 3-byte character only continuation bytes may come: 64 of them, not 20 -inf's
    after_lead = chat(server, {**body, "prefix_ids": [0xE7], "logprobs": True, "top_logprobs": 20})
    first = after_lead["choices"][0]["logprobs"]["content"][0]["top_logprobs"]
    assert 0 < len(first) <= 20 and all(math.isfinite(c["logprob"]) and 0x80 <= c["id"] < 0xC0 for c in first)


def test_logprobs_give_the_candidates_and_a_chosen_token_continues_the_reply(server, models_dir):
    name = str(models_dir / "sft" / "ckpt.pt")
    events = stream(server, {"model": name, "messages": as_messages(["你是誰？"]), "max_tokens": 8, "logprobs": True,
                             "top_logprobs": 5})
    steps = [e["choices"][0]["logprobs"]["content"][0] for e in events if e["choices"][0].get("logprobs")]
    assert len(steps) == 8
    for step in steps:  # greedy: the chosen token is the most likely, and the candidates are sorted
        top = step["top_logprobs"]
        assert len(top) == 5 and top[0]["id"] == step["id"] and top[0]["logprob"] == pytest.approx(step["logprob"])
        assert [c["logprob"] for c in top] == sorted((c["logprob"] for c in top), reverse=True)
        assert sum(torch.tensor([c["logprob"] for c in top]).exp()) <= 1 + 1e-5
    forced = steps[1]["top_logprobs"][3]["id"]  # the 4th candidate at the 2nd token, as the page's click sends it
    prefix = [steps[0]["id"], forced]
    text, _ = expected_reply(server, name, ["你是誰？"], 8, prefix=prefix)
    model, tokenizer = server.model(name)
    shown = tokenizer.decode(prefix).lstrip(" ")  # the page shows the prefix; the server sends the rest
    reply = chat(server, {"model": name, "messages": as_messages(["你是誰？"]), "max_tokens": 8, "prefix_ids": prefix})
    assert shown + reply["choices"][0]["message"]["content"] == text
    ended = chat(server, {"model": name, "messages": as_messages(["你是誰？"]), "prefix_ids": [steps[0]["id"], END]})
    assert ended["choices"][0] == {"index": 0, "message": {"role": "assistant", "content": ""}, "finish_reason": "stop",
                                   "logprobs": None}


def test_stop_strings_cut_the_reply_streamed_or_not(server, models_dir):
    name = str(models_dir / "sft" / "ckpt.pt")
    text, _ = expected_reply(server, name, ["Who are you?"], 40)
    stop = text[10:13]
    assert len(text) > 13 and stop.strip()
    body = {"model": name, "messages": as_messages(["Who are you?"]), "max_tokens": 40, "stop": [stop, "never said"]}
    whole = chat(server, body)["choices"][0]
    assert whole["message"]["content"] == text[:text.index(stop)] and whole["finish_reason"] == "stop"
    events = stream(server, body)
    assert "".join(e["choices"][0]["delta"].get("content", "") for e in events) == text[:text.index(stop)]


def test_a_pretrained_model_continues_the_text(server, models_dir):
    name = str(models_dir / "pretrain" / "ckpt.pt")
    model, tokenizer = server.model(name)
    ids = tokenizer.encode_document("臺灣最高的山是")
    expected = tokenizer.decode(generate(model, ids, 12, tokenizer=tokenizer, chat=False))
    reply = chat(server, {"model": name, "messages": as_messages(["臺灣最高的山是"]), "max_tokens": 12})
    assert reply["choices"][0]["message"]["content"] == expected and reply["choices"][0]["finish_reason"] == "length"


@pytest.mark.parametrize("body, status, says", [
    (b"{not json", 400, "not JSON"),
    (b"[1, 2]", 400, "JSON object"),
    ({"model": "gpt-4", "messages": [{"role": "user", "content": "hi"}]}, 404, "no model 'gpt-4'"),
    ({"messages": "hi"}, 400, "messages must be a list"),
    ({"messages": []}, 400, "alternate"),
    ({"messages": [{"role": "assistant", "content": "hi"}]}, 400, "alternate"),
    ({"messages": [{"role": "user", "content": "hi"}], "temperature": -1}, 400, "temperature must be"),
    ({"messages": [{"role": "user", "content": "hi"}], "max_tokens": 10 ** 6}, 400, "max_tokens must be"),
    ({"messages": [{"role": "user", "content": "hi"}], "top_p": "x"}, 400, "top_p must be"),
    (b'{"messages": [{"role": "user", "content": "hi"}], "max_tokens": Infinity}', 400, "max_tokens must be"),
    ({"messages": [{"role": "user", "content": "hi"}], "max_tokens": 10 ** 400}, 400, "max_tokens must be"),
    (b'{"messages": [{"role": "user", "content": "hi"}], "seed": ' + b"9" * 5000 + b"}", 400, "not JSON"),
    ({"messages": [{"role": "user", "content": "hi"}], "n": 2}, 400, "n must be"),
    ({"messages": [{"role": "user", "content": "hi"}], "stop": [""]}, 400, "stop must be"),
    ({"messages": [{"role": "user", "content": "hi"}], "prefix_ids": [10 ** 6]}, 400, "prefix_ids"),
    ({"messages": [{"role": "user", "content": "很長的問題" * 40}]}, 400, "context holds 64"),
    ({"model": ["x"], "messages": [{"role": "user", "content": "hi"}]}, 404, "no model"),
    ({"messages": [{"role": "user", "content": 5}]}, 400, "content must be text"),
    ({"messages": [{"role": "user", "content": "hi"}], "stream": "false"}, 400, "stream must be true or false"),
    ({"messages": [{"role": "user", "content": "hi"}], "top_logprobs": 3}, 400, "needs logprobs"),
    ({"messages": [{"role": "user", "content": "hi"}], "prefix_ids": [END, 65]}, 400, "cannot come there"),
    ({"messages": [{"role": "user", "content": "hi"}], "prefix_ids": [257]}, 400, "cannot come there"),
    ({"messages": [{"role": "user", "content": "hi"}], "prefix_ids": [0x80]}, 400, "cannot come there"),
])
def test_bad_requests_get_a_json_error_and_the_server_stays_up(server, body, status, says):
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    got, content_type, text = request(server, "POST", "/v1/chat/completions", raw=raw)
    assert got == status and content_type.startswith("application/json") and says in json.loads(text)["error"]["message"]
    assert chat(server, {"messages": as_messages(["hi"]), "max_tokens": 2})["choices"][0]["finish_reason"]


def test_unknown_paths_methods_and_bodies_are_refused(server):
    assert request(server, "GET", "/nothing")[0] == 404
    assert request(server, "POST", "/v1/completions", {})[0] == 404
    assert request(server, "DELETE", "/v1/models")[0] == 405 and request(server, "HEAD", "/")[0] == 200
    for headers, status in (({"Content-Length": "abc"}, 400), ({"Content-Length": "-1"}, 400),
                            ({"Transfer-Encoding": "chunked"}, 411)):
        connection = http.client.HTTPConnection(*server.server_address[:2], timeout=10)
        connection.putrequest("POST", "/v1/chat/completions")
        for key, value in headers.items():
            connection.putheader(key, value)
        connection.endheaders()
        response = connection.getresponse()
        assert response.status == status and json.loads(response.read())["error"]["message"]
    connection = http.client.HTTPConnection(*server.server_address[:2], timeout=10)
    connection.putrequest("POST", "/v1/chat/completions")
    connection.putheader("Content-Length", str(MAX_BODY + 1))
    connection.endheaders()  # the body is never sent: the server answers from the header alone
    response = connection.getresponse()
    assert response.status == 413 and "at most" in json.loads(response.read())["error"]["message"]


def test_several_clients_at_once_each_get_their_own_reply(server, models_dir):
    name = str(models_dir / "sft" / "ckpt.pt")
    expected = {q: expected_reply(server, name, [q], 30)[0] for q in QUESTIONS}
    assert len(set(expected.values())) > 1  # different questions, different replies: a mix-up would show
    got, barrier = {}, threading.Barrier(len(QUESTIONS))

    def ask(question: str) -> None:
        barrier.wait()
        body = {"model": name, "messages": as_messages([question]), "max_tokens": 30}
        got[question] = "".join(e["choices"][0]["delta"].get("content", "") for e in stream(server, body))

    threads = [threading.Thread(target=ask, args=(q,)) for q in QUESTIONS]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert got == expected


@pytest.mark.parametrize("streaming", [True, False])
def test_a_client_that_leaves_stops_its_generation(server, models_dir, capsys, streaming):
    connection = http.client.HTTPConnection(*server.server_address[:2], timeout=30)
    body = {"model": str(models_dir / "sft" / "ckpt.pt"), "messages": as_messages(["臺灣"]), "max_tokens": 4096,
            "stream": streaming, "stop": ["never written"]}
    connection.request("POST", "/v1/chat/completions", body=json.dumps(body).encode())
    if streaming:
        response = connection.getresponse()
        assert response.status == 200 and response.readline().startswith(b"data: ")
        response.close()
    else:
        time.sleep(0.2)  # the reply has begun
    connection.close()
    deadline, log = time.time() + 30, ""
    while "client left" not in log and time.time() < deadline:
        time.sleep(0.1)
        log += capsys.readouterr().err
    generated = int(re.search(r"(\d+) tokens in [\d.]+ s \(\d+ tokens/s\), client left", log).group(1))
    assert generated < 4096


def test_the_page_and_the_training_curves(server, models_dir):
    status, content_type, page = request(server, "GET", "/")
    assert status == 200 and content_type.startswith("text/html") and "文字接龍" in page
    assert not re.search(r"""(src|href)=["']?(https?:)?//""", page)  # nothing fetched from elsewhere (no CDN)
    runs = json.loads(request(server, "GET", "/api/runs")[2])
    assert list(runs) == [str(models_dir / "sft")]
    assert runs[str(models_dir / "sft")] == {"train": [[s, 5 - s / 10] for s in range(1, 21)], "val": [[20, 3.2]]}


def test_training_curves_of_a_diverged_run_and_a_damaged_log_are_valid_json(tmp_path):
    from serve import training_curves
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "log.jsonl").write_bytes(b'{"step": 1, "loss": 2.5}\n{"step": 2, "loss": NaN}\n\xff\xfe\n'
                                                 b'{"step": 3, "loss": Infinity, "val_loss": 2.0}\n'
                                                 b'{"step": 4, "loss": 1' + b"0" * 400 + b'}\n{"step": 5, "loss": ' + b"9" * 5000 + b'}\n')
    runs = training_curves(tmp_path)
    assert runs == {str(tmp_path / "run"): {"train": [[1, 2.5]], "val": [[3, 2.0]]}}  # no NaN, infinity, nor beyond a float
    json.dumps(runs, allow_nan=False)  # what the page's JSON.parse takes


def test_the_server_starts_warns_off_localhost_and_stops_on_ctrl_c(models_dir):
    process = subprocess.Popen([sys.executable, "serve.py", f"--models_dir={models_dir}", "--port=0", "--host=0.0.0.0",
                                "--dtype=float32"], cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        line = process.stdout.readline()
        port = int(re.fullmatch(r"serving on http://0\.0\.0\.0:(\d+) \(Ctrl-C stops\)\n", line).group(1))
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        connection.request("GET", "/v1/models")
        assert connection.getresponse().status == 200
        taken = subprocess.run([sys.executable, "serve.py", f"--models_dir={models_dir}", f"--port={port}"],
                               cwd=ROOT, capture_output=True, text=True, timeout=60)
        assert taken.returncode == 2 and f"cannot listen on 127.0.0.1:{port}" in taken.stderr
        assert "another --port" in taken.stderr
        no_such = subprocess.run([sys.executable, "serve.py", f"--models_dir={models_dir}", "--host=127.0.0..1"],
                                 cwd=ROOT, capture_output=True, text=True, timeout=60)
        assert no_such.returncode == 2 and "give --host an address of this machine" in no_such.stderr
        assert "Traceback" not in taken.stderr
        process.send_signal(signal.SIGINT)
        _, err = process.communicate(timeout=30)
    finally:
        process.kill()
    assert process.returncode == 0 and "warning: listening on 0.0.0.0" in err and "stopped" in err
    assert "Traceback" not in err
