"""
See the model think: a local web page, and an OpenAI-compatible API, from one small server.

    python serve.py                        # then open http://127.0.0.1:8000
    python serve.py --models_dir=out/experiment --port=8080

The page (serve.html, served from here: nothing is fetched from the internet) has
  Chat            a conversation streamed token by token, with temperature, top-k, top-p, reset;
  文字接龍         for each token of the reply, its top candidates and their probabilities as bars:
                  click one and the reply goes on from it, as the lecture draws generation;
  Side by side    one question to every model found under --models_dir (a pretrained model
                  continues the text: it has never seen the chat template);
  Training curves the loss and validation loss of every run's log.jsonl.

The API speaks OpenAI's chat completions, so the openai client and curl work unchanged:
    GET  /v1/models
    POST /v1/chat/completions   {"model": ..., "messages": [{"role": "user", "content": "你是誰？"}],
                                 "stream": false, "max_tokens": 100, "temperature": 0, "top_p": 1,
                                 "stop": [...], "seed": 1, "logprobs": false, "top_logprobs": 0}
A chat reply stops at [END], a pretrained model's continuation at <|doc|> (its document ends).
Extensions: "top_k"; "prefix_ids", token ids the reply starts with (the page's clicked
candidate; the content then continues the prefix's whole characters); each logprobs entry
carries the token's "id", and the last is [END]'s (the lecture's picture ends with it). System
and developer messages are skipped (the template has no place for them); temperature defaults
to 0 (greedy, as sample.py). A conversation longer than the context loses its oldest turns, as
in sample.py. The standard library's threading HTTP server: each request has its own thread
and its own KV cache, and a client that leaves stops its generation.
"""
from __future__ import annotations

import errno
import json
import math
import os
import select
import signal
import socket
import sys
import threading
import traceback
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import torch

from cli import DEVICE, UserError, parse_args, run
from generation import generate_steps, load_for_generation
from machine import choose_device, set_threads
from tokenizer import DOC, END, chat_fits, utf8_pending

OPTIONS = {
    "host": ("127.0.0.1", "the address to listen on; anything but 127.0.0.1 lets other machines in (a warning says so)"),
    "port": (8000, "the port (0: any free one)", "[0, 65535]"),
    "models_dir": ("out", "serve every checkpoint and LoRA adapter found under this folder"),
    "device": ("auto", "auto (CUDA if present, else CPU), cpu, cuda, ...", DEVICE),
    "dtype": ("auto", "weights for generation, as in sample.py", ("auto", "int8", "bfloat16", "float32")),
    "threads": (0, "CPU threads for generation (0: one per core but one, which the HTTP side and the browser need: "
                   "a reply computed on every core stalls whenever another program takes one)", "[0, 1024]"),
}
PAGE = Path(__file__).with_name("serve.html")
MAX_BODY = 1 << 20  # bytes of one request
MAX_TOKENS = 4096  # the most tokens one reply may ask for
READ_SECONDS = 30  # a client that sends less than it announced is answered after this
CURVE_POINTS = 400  # training-loss points per run sent to the page


class RequestError(Exception):
    """A request the server refuses: answered with this HTTP status and a JSON error."""

    def __init__(self, status: int, message: str, code: str = "invalid_request_error"):
        super().__init__(message)
        self.status, self.code = status, code


def find_models(folder: Path) -> dict[str, dict]:
    """Every model under folder -> {name: {"ckpt", "adapter", "chat"}}, the newest fine-tuned first
    (the one sample.py would pick). A LoRA run's folder is served by its adapter; a pretraining
    checkpoint is served as text continuation (chat: False)."""
    found = []
    for path in sorted(folder.rglob("*.pt")):
        if path.name == "adapter.pt":
            found.append((path, {"ckpt": "", "adapter": str(path), "chat": True}))
        elif path.name in ("ckpt.pt", "merged.pt") and not (path.parent / "adapter.pt").exists():
            try:  # mmap: reads the small "kind" value, not the weights
                kind = torch.load(path, map_location="cpu", weights_only=True, mmap=True).get("kind")
            except Exception:
                print(f"skipped {path}: not a readable checkpoint", file=sys.stderr)
                continue
            if kind in ("pretrain", "sft", "merged"):
                found.append((path, {"ckpt": str(path), "adapter": "", "chat": kind != "pretrain"}))
    newest = lambda item: (not item[1]["chat"], -item[0].stat().st_mtime)
    return {str(path): entry for path, entry in sorted(found, key=newest)}


def read_request(body: dict, models: dict) -> dict:
    """A chat completion request, checked -> the settings generation takes."""
    name = body.get("model") or next(iter(models), "")
    if not isinstance(name, str) or name not in models:
        raise RequestError(404, f"no model {name!r}: GET /v1/models lists them", "model_not_found")
    messages = body.get("messages")
    if not isinstance(messages, list) or not all(isinstance(m, dict) for m in messages):
        raise RequestError(400, "messages must be a list of {\"role\": ..., \"content\": \"text\"}")
    turns = [m for m in messages if m.get("role") not in ("system", "developer")]
    roles = [m.get("role") for m in turns]
    if not turns or roles != ["user", "assistant"] * (len(turns) // 2) + ["user"] * (len(turns) % 2):
        raise RequestError(400, "messages must alternate user and assistant, and end with the user's")

    def number(key, default, low, high, kind=float):
        value = body.get(key)
        value = default if value is None else value
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not low <= value <= high \
                or (kind is int and value != int(value)):  # (NaN and an integer of any size compare: no overflow)
            raise RequestError(400, f"{key} must be a {'whole ' if kind is int else ''}number from {low} to {high}")
        return kind(value)

    def flag(key) -> bool:
        if not isinstance(body.get(key, False), bool):
            raise RequestError(400, f"{key} must be true or false")
        return body.get(key, False)

    stop = body.get("stop") or []
    stop = [stop] if isinstance(stop, str) else stop
    if not isinstance(stop, list) or len(stop) > 4 or not all(isinstance(s, str) and s for s in stop):
        raise RequestError(400, "stop must be a string or a list of at most 4 non-empty strings")
    prefix_ids = body.get("prefix_ids") or []
    if not isinstance(prefix_ids, list) or not all(isinstance(i, int) and not isinstance(i, bool) for i in prefix_ids):
        raise RequestError(400, "prefix_ids must be a list of token ids")
    number("n", 1, 1, 1, int)
    top_logprobs = number("top_logprobs", 0, 0, 20, int)
    if top_logprobs and not flag("logprobs"):
        raise RequestError(400, "top_logprobs needs logprobs: true")
    usage = body.get("stream_options") or {}
    return {"model": name, "turns": [message_text(m) for m in turns], "stop": stop, "prefix_ids": prefix_ids,
            "stream": flag("stream"), "logprobs": flag("logprobs"), "top_logprobs": top_logprobs,
            "usage_chunk": isinstance(usage, dict) and usage.get("include_usage") is True,
            "max_tokens": number("max_completion_tokens", number("max_tokens", 100, 1, MAX_TOKENS, int), 1, MAX_TOKENS, int),
            "temperature": number("temperature", 0.0, 0, 2), "top_p": number("top_p", 1.0, 0, 1),
            "top_k": number("top_k", 0, 0, 1 << 30, int),
            "seed": number("seed", int.from_bytes(os.urandom(4), "little"), 0, (1 << 63) - 1, int)}


def message_text(message: dict) -> str:
    """A message's content: a string, or OpenAI's list of parts, of which text parts only."""
    content = message.get("content")
    if isinstance(content, list) and all(isinstance(part, dict) and part.get("type") == "text"
                                         and isinstance(part.get("text"), str) for part in content):
        content = "".join(part["text"] for part in content)
    if not isinstance(content, str):
        raise RequestError(400, "a message's content must be text, or a list of {\"type\": \"text\", \"text\": ...}")
    return content


def prompt_ids(request: dict, tokenizer, block: int, chat: bool) -> list[int]:
    """The ids the reply continues: the chat template (oldest turns dropped to fit), or for a
    pretrained model the last message as plain text; then the given prefix of the reply, which
    must be what generation itself could have written (tokenizer.allowed_next, [END] only last)."""
    turns, prefix = request["turns"], request["prefix_ids"]
    pending = b""
    for i, token in enumerate(prefix):
        if not (0 <= token < tokenizer.vocab_size and tokenizer.allowed_next(pending, chat)[token]) \
                or (token in (END, DOC) and i < len(prefix) - 1):
            raise RequestError(400, f"prefix_ids: token {token} cannot come there (ids of this model's vocabulary, "
                                    "valid UTF-8, no special token but a last [END])")
        pending = utf8_pending(pending + tokenizer.token_bytes[token])
    if chat:
        history = list(zip(turns[:-1:2], turns[1::2]))
        ids, _ = tokenizer.chat_prompt(history, turns[-1], block, request["max_tokens"])
        fits = chat_fits(ids + prefix, block, request["max_tokens"])
    else:
        ids = tokenizer.encode_document(turns[-1])
        fits = len(ids + prefix) < block
    if not fits:
        raise RequestError(400, f"the message is {len(ids + prefix)} tokens{' with the template' if chat else ''}; "
                                f"this model's context holds {block} and needs room for the reply: shorten it",
                           "context_length_exceeded")
    return ids + prefix


def token_entry(tokenizer, token: int, logprob: float) -> dict:
    raw = tokenizer.token_bytes[token]
    return {"id": token, "token": raw.decode("utf-8", errors="replace"), "logprob": logprob, "bytes": list(raw)}


def reply_steps(model, tokenizer, chat: bool, ids: list[int], request: dict):
    """Generate one reply -> yields (text to add, logprobs entry or None, None) per token, then
    (the text held back, None, the finish reason: stop or length). The text holds back what might begin a stop
    string, and the space an English reply starts with (see tokenizer.encode_turn)."""
    prefix, stop_id = request["prefix_ids"], END if chat else DOC
    if prefix[-1:] == [stop_id]:
        yield "", None, "stop"
        return
    decode = tokenizer.stream_decoder()
    text = "".join(decode(t) for t in prefix)
    text = text.lstrip(" ") if chat else text
    sent = given = len(text)  # the client has the prefix's text already
    generator = torch.Generator().manual_seed(request["seed"])
    for [token], logits in generate_steps(model, [ids], request["max_tokens"], request["temperature"],
                                          request["top_k"], request["top_p"], stop_id, generator,
                                          tokenizer=tokenizer, chat=chat,
                                          unfinished=utf8_pending(tokenizer.decode_bytes(prefix))):
        entry = None
        if request["logprobs"]:
            logprobs = logits[0].float().log_softmax(-1)
            entry = token_entry(tokenizer, token, float(logprobs[token]))
            top = logprobs.topk(request["top_logprobs"]) if request["top_logprobs"] else ((), ())
            entry["top_logprobs"] = [token_entry(tokenizer, int(i), float(p)) for p, i in zip(*top) if p > -math.inf]
        if token == stop_id:
            yield text[sent:], entry, None
            yield "", None, "stop"
            return
        text += decode(token)
        text = text.lstrip(" ") if chat and not sent else text
        cut = min((text.find(s, given) for s in request["stop"] if s in text[given:]), default=-1)
        if cut >= 0:
            yield text[sent:cut], entry, None
            yield "", None, "stop"
            return
        held = max((k for s in request["stop"] for k in range(1, len(s)) if text.endswith(s[:k])), default=0)
        yield text[sent:len(text) - held], entry, None
        sent = max(sent, len(text) - held)
    yield text[sent:], None, "length"


class Handler(BaseHTTPRequestHandler):
    server_version = "nanoInstruct"
    disable_nagle_algorithm = True  # one small write per token: send each at once, not when the last is acknowledged
    timeout = READ_SECONDS

    def log_message(self, format, *args):  # one line per reply instead (see complete)
        pass

    def send_body(self, status: int, body: bytes, content_type: str) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def send_json(self, status: int, value) -> None:
        self.send_body(status, json.dumps(value, ensure_ascii=False).encode(), "application/json; charset=utf-8")

    def send_error_json(self, error: RequestError) -> None:
        kind = "server_error" if error.status >= 500 else "invalid_request_error"
        self.send_json(error.status, {"error": {"message": str(error), "type": kind, "param": None, "code": error.code}})

    def model_entry(self, name: str) -> dict:
        return {"id": name, "object": "model", "created": int(Path(name).stat().st_mtime), "owned_by": "nanoInstruct",
                "chat": self.server.models[name]["chat"]}

    def do_GET(self) -> None:
        path = self.path.split("?")[0]
        if path in ("/", "/index.html"):
            self.send_body(200, PAGE.read_bytes(), "text/html; charset=utf-8")
        elif path == "/v1/models":
            self.send_json(200, {"object": "list", "data": [self.model_entry(name) for name in self.server.models]})
        elif path.startswith("/v1/models/") and path[len("/v1/models/"):] in self.server.models:
            self.send_json(200, self.model_entry(path[len("/v1/models/"):]))
        elif path == "/api/runs":
            self.send_json(200, training_curves(self.server.models_dir))
        else:
            self.send_error_json(RequestError(404, f"nothing at {path}", "not_found"))

    do_HEAD = do_GET

    def refuse_method(self) -> None:
        self.send_error_json(RequestError(405, f"{self.command} is not answered here: GET the page and "
                                               "/v1/models, POST /v1/chat/completions", "method_not_allowed"))

    do_PUT = do_DELETE = do_PATCH = do_OPTIONS = refuse_method

    def do_POST(self) -> None:
        try:
            if self.path.split("?")[0] != "/v1/chat/completions":
                raise RequestError(404, f"nothing at {self.path}: POST /v1/chat/completions", "not_found")
            self.complete(read_request(self.read_json(), self.server.models))
        except RequestError as e:
            self.send_error_json(e)
        except UserError as e:  # a model under models_dir that cannot be loaded
            self.send_error_json(RequestError(500, str(e), "model_error"))
        except (BrokenPipeError, ConnectionResetError, TimeoutError):
            pass  # the client is gone: nobody to answer
        except Exception as e:  # a bug: the client hears of it, the server stays up
            traceback.print_exc()
            self.send_error_json(RequestError(500, f"the server failed ({type(e).__name__}: {e}): please report it",
                                              "server_error"))

    def read_json(self) -> dict:
        if self.headers.get("Transfer-Encoding"):
            raise RequestError(411, "send the body with a Content-Length, not chunked", "length_required")
        length = self.headers.get("Content-Length") or "0"
        if not length.isdigit():
            raise RequestError(400, f"Content-Length must be a number of bytes, not {length!r}")
        if int(length) > MAX_BODY:
            raise RequestError(413, f"the request is {int(length):,} bytes; at most {MAX_BODY:,}")
        try:
            data = self.rfile.read(int(length))
        except TimeoutError:
            raise RequestError(408, f"the body announced {int(length):,} bytes and did not come within "
                                    f"{READ_SECONDS} s", "timeout") from None
        try:
            body = json.loads(data or b"null")
        except (ValueError, RecursionError) as e:  # ValueError: bad JSON, not UTF-8, a number of 5,000 digits
            raise RequestError(400, f"the body is not JSON ({e})") from None
        if not isinstance(body, dict):
            raise RequestError(400, "the body must be a JSON object")
        return body

    def client_left(self) -> bool:
        """Whether the client closed its side: readable, with nothing to read (it sends nothing more)."""
        try:
            readable, _, _ = select.select([self.connection], [], [], 0)
            return bool(readable) and self.connection.recv(1, socket.MSG_PEEK) == b""
        except OSError:
            return True

    def complete(self, request: dict) -> None:
        """Answer a chat completion: as server-sent events (one chunk per token) or one JSON."""
        model, tokenizer = self.server.model(request["model"])
        chat = self.server.models[request["model"]]["chat"]
        ids = prompt_ids(request, tokenizer, model.config.block_size, chat)
        reply = {"id": f"chatcmpl-{uuid.uuid4().hex[:24]}", "created": int(time.time()), "model": request["model"]}
        steps = reply_steps(model, tokenizer, chat, ids, request)
        started, count, reason, text, logprobs = time.perf_counter(), 0, "error", [], []
        try:
            if request["stream"]:
                self.send_response(200)
                self.send_header("Content-Type", "text/event-stream; charset=utf-8")
                self.send_header("Cache-Control", "no-cache")
                self.end_headers()
                self.send_event(reply, [{"index": 0, "delta": {"role": "assistant", "content": ""}, "finish_reason": None}])
            for piece, entry, finish in steps:
                count += not finish
                if request["stream"] and (piece or entry):
                    choice = {"index": 0, "delta": {"content": piece}, "finish_reason": None}
                    self.send_event(reply, [{**choice, "logprobs": {"content": [entry]}} if entry else choice])
                elif self.client_left():  # a client waiting for the whole reply can leave too
                    raise ConnectionResetError
                text.append(piece)
                logprobs += [entry] if entry else []
                if finish:
                    reason = finish
                    break
            usage = {"prompt_tokens": len(ids), "completion_tokens": count, "total_tokens": len(ids) + count}
            if request["stream"]:
                self.send_event(reply, [{"index": 0, "delta": {}, "finish_reason": reason}])
                if request["usage_chunk"]:
                    self.send_event(reply, [], usage)
                self.wfile.write(b"data: [DONE]\n\n")
            else:
                self.send_json(200, {**reply, "object": "chat.completion", "choices": [
                    {"index": 0, "message": {"role": "assistant", "content": "".join(text)}, "finish_reason": reason,
                     "logprobs": {"content": logprobs} if request["logprobs"] else None}], "usage": usage})
        except (BrokenPipeError, ConnectionResetError):
            reason = "client left"
        finally:
            steps.close()
            seconds = time.perf_counter() - started
            print(f"{self.client_address[0]} {request['model']}: {count} tokens in {seconds:.2f} s "
                  f"({count / max(seconds, 1e-9):.0f} tokens/s), {reason}", file=sys.stderr, flush=True)

    def send_event(self, reply: dict, choices: list, usage: dict | None = None) -> None:
        chunk = {**reply, "object": "chat.completion.chunk", "choices": choices, **({"usage": usage} if usage else {})}
        self.wfile.write(f"data: {json.dumps(chunk, ensure_ascii=False)}\n\n".encode())


def finite(value) -> float | None:
    """A log's number as a float the page can draw; None for NaN, infinity, a number too large, or not a number."""
    if not isinstance(value, (int, float)) or isinstance(value, bool):
        return None
    try:
        return float(value) if math.isfinite(value) else None
    except OverflowError:  # an integer beyond any float
        return None


def training_curves(folder: Path) -> dict[str, dict]:
    """Every run's log.jsonl under folder -> {run: {"train": [[step, loss], ...], "val": [[step, val_loss], ...]}}"""
    runs = {}
    for log in sorted(folder.rglob("log.jsonl")):
        train, val = [], []
        try:
            lines = log.read_text(encoding="utf-8", errors="replace").splitlines()
        except OSError:  # removed while the page asked
            continue
        for line in lines:
            try:
                row = json.loads(line)
            except (ValueError, RecursionError):  # a line being written, or damaged
                continue
            if not isinstance(row, dict) or finite(row.get("step")) is None:
                continue
            for key, curve in (("loss", train), ("val_loss", val)):  # a diverged run's NaN is no point: JSON has none
                value = finite(row.get(key))
                if value is not None:
                    curve.append([row["step"], value])
        every = max(1, len(train) // CURVE_POINTS)
        runs[str(log.parent)] = {"train": train[::every], "val": val}
    return runs


class Server(ThreadingHTTPServer):
    daemon_threads = True  # Ctrl-C does not wait for replies in progress

    def __init__(self, address: tuple[str, int], models_dir: Path, device: str, dtype: str):
        self.address_family = socket.AF_INET6 if ":" in address[0] else socket.AF_INET  # --host=::1 too
        super().__init__(address, Handler)
        self.models_dir, self.device, self.dtype = models_dir, device, dtype
        self.models = find_models(models_dir)
        self.loaded: dict[str, tuple] = {}
        self.loading = threading.Lock()

    def model(self, name: str):
        """-> (model, tokenizer), loaded on first use and kept (the lock only while loading)."""
        if name in self.loaded:
            return self.loaded[name]
        with self.loading:
            if name not in self.loaded:
                entry = self.models[name]
                model, tokenizer, _ = load_for_generation(entry["ckpt"], entry["adapter"], self.device, self.dtype)
                self.loaded[name] = model, tokenizer
            return self.loaded[name]


def main() -> None:
    config, _, _ = parse_args(OPTIONS, "python serve.py [--port=8000] [--models_dir=out] [--key=value ...]", __doc__)
    set_threads(config["threads"] or max(1, (os.cpu_count() or 2) - 1))
    folder = Path(config["models_dir"])
    if not folder.is_dir():
        raise UserError(f"no folder {folder}: train a model first (python pretrain.py, python finetune.py --lora), "
                        "or give the folder that holds your runs with --models_dir")
    try:
        server = Server((config["host"], config["port"]), folder, choose_device(config["device"]), config["dtype"])
    except OSError as e:
        advice = {errno.EADDRINUSE: "is a server running there already? choose another --port",
                  errno.EACCES: "ports below 1024 need more rights: choose another --port"}.get(
            e.errno, "give --host an address of this machine (127.0.0.1, or 0.0.0.0 for every network)")
        raise UserError(f"cannot listen on {config['host']}:{config['port']} ({e.strerror or e}): {advice}") from None
    if not server.models:
        server.server_close()
        raise UserError(f"no model under {folder} (no ckpt.pt or adapter.pt): train one first (python pretrain.py, "
                        "python finetune.py --lora), or give the folder that holds your runs with --models_dir")
    if config["host"] not in ("127.0.0.1", "localhost", "::1"):
        print(f"warning: listening on {config['host']}: other machines can reach this server, and it has no password",
              file=sys.stderr)
    server.model(next(iter(server.models)))  # the default model loads now: an unreadable one is said at once
    host, port = server.server_address[:2]
    print(f"{len(server.models)} model{'s' * (len(server.models) > 1)} under {folder}; the default is "
          f"{next(iter(server.models))}", file=sys.stderr)
    host = f"[{host}]" if server.address_family == socket.AF_INET6 else host  # as URLs write an IPv6 address
    print(f"serving on http://{host}:{port} (Ctrl-C stops)", flush=True)
    try:
        signal.signal(signal.SIGINT, signal.default_int_handler)  # Ctrl-C stops it, even if started ignoring SIGINT (&)
        server.serve_forever()
    except KeyboardInterrupt:
        print("stopped", file=sys.stderr)
    finally:
        server.server_close()


if __name__ == "__main__":
    run(main)
