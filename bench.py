"""
How fast is training and generation on this machine, against what the machine can do at all?

    python bench.py                       # every row, printed as a table
    python bench.py --rows=pretrain,generate --configs=ref --json=bench.json
    python bench.py --readme              # every row, written into README.md and docs/speed.md

First it measures the matmul peak (a 2048 x 2048 matmul, fp32, and bf16 where a row runs in bf16): the physical limit.
Then each row runs in a fresh process (so its peak memory is its own) and reports tokens/s
(from the median step time), achieved FLOP/s (the FLOPs the step does, model.training_flops,
over its time), the fraction of the peak of the precision it ran in, the process's peak
memory, and the memory training keeps from step to step (weights, gradients of what trains,
optimizer state). Rows:
    pretrain   a pretraining step (forward, backward, pretrain.py's optimizer) on random tokens
    finetune   full fine-tuning on chat-like rows where half the targets are prompt (ignored)
    lora       the same through LoRA (finetune.py's default adapter: rank 16, attention and MLP projections)
    generate   batch 1, 255 new tokens with the KV cache (and without it, for comparison)
    serve      a chat reply as sample.py generates it (template, [END], the UTF-8 rule), then the same
               reply streamed through serve.py's API over HTTP: what the server costs
"""
from __future__ import annotations

import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

from cli import UserError, atomic_write, parse_args, run, update_docs
from pretrain import MODEL_KEYS, OPTIONS as PRETRAIN_OPTIONS

OPTIONS = {
    "rows": ("pretrain,finetune,lora,generate,serve", "which rows to run"),
    "configs": ("small,ref,large", "model sizes: small (4x256), ref (6x384), large (8x512); all with vocabulary 8192"),
    "dtype": ("auto", "auto (bfloat16 where supported), bfloat16, float32, or both",
              ("auto", "bfloat16", "float32", "both")),
    "steps": (7, "timed training steps per row (after warm-up); the median counts", "[1, inf)"),
    "warmup": (3, "untimed steps first", "[0, inf)"),
    "batch_size": (PRETRAIN_OPTIONS["batch_size"][0], "sequences per step (pretrain.py's default)", "[1, inf)"),
    "compile": (False, "torch.compile the model (compile time is reported separately)"),
    "device": ("auto", "auto, cpu, cuda", ("auto", "cpu", "cuda")),
    "json": ("", "also write the results to this JSON file"),
    "readme": (False, "write the table into README.md (the default size's rows) and docs/speed.md (all rows), "
                      "and its record docs/bench_results.json"),
    "profile": (False, "after each training row, where its step's time goes (torch.profiler, the top operations)"),
    "row": ("", "(internal) run one row in this process and print it as JSON"),
}
CONFIGS = {"small": dict(n_layer=4, n_head=4, n_embd=256),  # pretrain.py's default
           "ref": dict(n_layer=6, n_head=6, n_embd=384),
           "large": dict(n_layer=8, n_head=8, n_embd=512)}
BLOCK_SIZE, VOCAB = 256, 8192
# pretrain.py's architecture (rotary positions, QK-norm, ...): every size is its model, scaled
ARCHITECTURE = {k: PRETRAIN_OPTIONS[k][0] for k in MODEL_KEYS if k not in ("n_layer", "n_head", "n_embd", "block_size")}
ROOT = Path(__file__).resolve().parent
README_CONFIGS = ("small",)  # the README's training rows: the default size (docs/speed.md has all)
RECORD = ROOT / "docs" / "bench_results.json"  # the results the speed tables in README.md and docs/speed.md show


def matmul_peak(torch, device: str, dtype, n: int = 2048, seconds: float = 1.0, tries: int = 3) -> float:
    """FLOP/s of a square matmul: the best of a few one-second tries, as a busy moment on a shared
    machine can only make one slower than the hardware is."""
    a, b = torch.randn(n, n, device=device, dtype=dtype), torch.randn(n, n, device=device, dtype=dtype)
    for _ in range(3):
        a @ b
    best = 0.0
    for _ in range(tries):
        count, start = 0, time.perf_counter()
        while time.perf_counter() - start < seconds:
            a @ b
            count += 1
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        best = max(best, 2 * n ** 3 * count / (time.perf_counter() - start))
    return best


def peak_memory_mb(torch, device: str) -> float:
    if device.startswith("cuda"):
        return torch.cuda.max_memory_allocated() / 2**20
    import resource
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux reports KiB


def timed(torch, device: str, step, n_steps: int, n_warmup: int) -> float:
    """Seconds per step: the median of n_steps timed steps, so that a moment when this shared
    machine is busy elsewhere does not count as the code being slow."""
    for _ in range(n_warmup):
        step()
    if device.startswith("cuda"):
        torch.cuda.synchronize()
    times = []
    for _ in range(n_steps):
        start = time.perf_counter()
        step()
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def run_row(spec: dict) -> dict:
    """One row, in this process: build the model, time it, report."""
    import torch
    from machine import keep_freed_memory
    from model import GPT, GPTConfig

    keep_freed_memory()  # as train() does
    torch.manual_seed(0)
    model = GPT(GPTConfig(block_size=BLOCK_SIZE, vocab_size=VOCAB, **CONFIGS[spec["config"]], **ARCHITECTURE)).to(spec["device"])
    result = {"row": spec["kind"], "config": spec["config"], "dtype": spec["dtype"], "compile": spec["compile"],
              "params_M": round(model.num_params() / 1e6, 2)}
    row = {"generate": generation_row, "serve": serve_row}.get(spec["kind"], training_row)
    return row(torch, model, spec, result)


def generation_row(torch, model, spec: dict, result: dict) -> dict:
    """Batch 1, as sample.py runs it: weights in the row's dtype, the KV cache (and without it)."""
    from generation import for_generation, generate
    device = spec["device"]

    def tokens_per_s(model, repeats: int, **options) -> float:
        """The median of repeated runs: one slow run on a shared machine does not drag it down."""
        runs = [255 / timed(torch, device, lambda: list(generate(model, [1], 255, **options)), 1, 1 if i == 0 else 0) for i in range(repeats)]
        return round(statistics.median(runs), 1)
    model = for_generation(model.eval(), device, spec["dtype"])  # bfloat16 or float32
    result["tokens_per_s"] = tokens_per_s(model, 5)
    result["no_cache_tokens_per_s"] = tokens_per_s(model, 1, use_cache=False)
    if device == "cpu" and spec["dtype"] == "bfloat16":  # sample.py --dtype=int8, the default on such a CPU
        result["int8_tokens_per_s"] = tokens_per_s(for_generation(model, device, "int8"), 5)
    result["peak_memory_MB"] = round(peak_memory_mb(torch, device))
    return result


def serve_row(torch, model, spec: dict, result: dict) -> dict:
    """A chat reply as sample.py makes it, then streamed from serve.py in its own process, as a
    browser or the openai client meets it."""
    import http.client
    import tempfile

    from checkpoint import save_checkpoint
    from generation import for_generation, generate
    from tokenizer import END, Tokenizer
    device = spec["device"]

    path = Path(tempfile.mkdtemp()) / "sft" / "ckpt.pt"
    path.parent.mkdir()
    save_checkpoint({"model": model.state_dict(), "model_config": model.config.__dict__, "kind": "sft",
                     "vocab": list(range(1000, 1000 + VOCAB - 260))}, path)  # any 7,932 cl100k tokens
    tokenizer, question = Tokenizer(list(range(1000, 1000 + VOCAB - 260))), "台灣最高的山是哪座？"
    ids, _ = tokenizer.chat_prompt([], question, BLOCK_SIZE, 255)
    generating = for_generation(model.eval(), device, spec["dtype"])
    server = subprocess.Popen([sys.executable, "serve.py", f"--models_dir={path.parent.parent}", "--port=0",
                               f"--dtype={spec['dtype']}", f"--device={device}"], stdout=subprocess.PIPE,
                              stderr=subprocess.DEVNULL, text=True, cwd=Path(__file__).parent)
    port = int(server.stdout.readline().split(":")[2].split()[0])
    body = json.dumps({"messages": [{"role": "user", "content": question}], "max_tokens": 255, "stream": True})

    def direct() -> int:
        return len(list(generate(generating, ids, 255, stop_id=END, tokenizer=tokenizer)))

    def served() -> int:
        connection = http.client.HTTPConnection("127.0.0.1", port)
        connection.request("POST", "/v1/chat/completions", body=body)
        return connection.getresponse().read().count(b'"content"') - 1  # the first chunk only says the role

    for name, reply in (("tokens_per_s", direct), ("serve_tokens_per_s", served)) * 2:  # interleaved: the second pass counts
        runs = []
        for i in range(6):
            start = time.perf_counter()
            n = reply()
            runs.append(n / (time.perf_counter() - start))
        result[name] = round(statistics.median(runs[1:]), 1)  # the first run warms up
    server.terminate()
    result["peak_memory_MB"] = round(peak_memory_mb(torch, device))
    return result


def training_row(torch, model, spec: dict, result: dict) -> dict:
    """Training steps (forward, backward, the optimizer: pretrain.py's, AdamW for fine-tuning) on
    random tokens; fine-tuning rows ignore the prompt half of each row, as the loss mask does."""
    from machine import autocast
    from model import IGNORE
    from optimizer import make_optimizer
    device, kind = spec["device"], spec["kind"]
    ctx = autocast(device, spec["dtype"])
    if kind == "lora":
        from lora import add_lora
        from finetune import OPTIONS as FINETUNE_OPTIONS  # the adapter `finetune.py --lora` trains
        add_lora(model, FINETUNE_OPTIONS["lora_targets"][0].split(","), FINETUNE_OPTIONS["lora_rank"][0],
                 FINETUNE_OPTIONS["lora_alpha"][0], FINETUNE_OPTIONS["lora_dropout"][0])
    trainable = [p for p in model.parameters() if p.requires_grad]
    muon = kind == "pretrain" and PRETRAIN_OPTIONS["muon"][0]
    optimizer = make_optimizer(model, 1e-4, 0.1, 0.99, muon, dtype=spec["dtype"])
    B, T = spec["batch_size"], BLOCK_SIZE
    x = torch.randint(VOCAB, (B, T), device=device)
    y = torch.randint(VOCAB, (B, T), device=device)
    if kind != "pretrain":
        y[:, : T // 2] = IGNORE  # chat rows: the prompt half does not count (and skips the output layer)
    forward = torch.compile(model) if spec["compile"] else model
    compile_start = time.perf_counter()

    def step():
        with ctx:
            _, loss = forward(x, y)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(trainable, 1.0)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    if spec["compile"]:
        step()
        result["compile_s"] = round(time.perf_counter() - compile_start, 1)
    seconds = timed(torch, device, step, spec["steps"], spec["warmup"])
    if spec["profile"]:
        with torch.profiler.profile() as profiler:
            for _ in range(2):
                step()
        result["profile"] = profiler.key_averages().table(sort_by="self_cpu_time_total", row_limit=12)
    tokens_per_s = B * T / seconds
    peak = spec["peak_bf16"] if spec["dtype"] == "bfloat16" else spec["peak_fp32"]
    # the FLOPs this step does: the output layer only where targets count, no weight gradients under LoRA
    achieved = model.training_flops(B * T, int((y != IGNORE).sum()), weights_train=kind != "lora") / seconds
    optimizer_bytes = sum(t.numel() * t.element_size() for s in optimizer.state.values() for t in s.values()
                          if torch.is_tensor(t))
    # what training keeps between steps: weights, the gradients of what trains, optimizer state
    weight_bytes = sum(p.numel() * p.element_size() for p in {id(p): p for p in model.parameters()}.values())
    grad_bytes = sum(p.numel() * p.element_size() for p in trainable)
    result.update(trainable_M=round(sum(p.numel() for p in trainable) / 1e6, 3), seconds_per_step=round(seconds, 3),
                  tokens_per_s=round(tokens_per_s), achieved_TFLOPs=round(achieved / 1e12, 4),
                  fraction_of_peak=round(achieved / peak, 3), optimizer_state_MB=round(optimizer_bytes / 2**20, 2),
                  training_state_MB=round((weight_bytes + grad_bytes + optimizer_bytes) / 2**20, 1),
                  peak_memory_MB=round(peak_memory_mb(torch, device)), muon=muon)
    return result


def row_line(r: dict) -> str:
    """One result as a line of the markdown table."""
    if r["row"] == "serve":
        notes = (f"a chat reply as sample.py makes it; through serve.py's API {r['serve_tokens_per_s']:,.0f} "
                 f"tokens/s, {r['serve_tokens_per_s'] / r['tokens_per_s']:.0%} of it")
    elif r["row"] == "generate":
        notes = f"batch 1, 255 new tokens; without the KV cache {r['no_cache_tokens_per_s']:,.0f} tokens/s" \
            + (f"; int8 weights {r['int8_tokens_per_s']:,.0f} tokens/s" if "int8_tokens_per_s" in r else "")
    else:
        notes = f"{r['trainable_M']}M trainable; {r['training_state_MB']:.0f} MB kept between steps" \
            + (f", compile {r['compile_s']} s" if "compile_s" in r else "") \
            + ("; Muon's orthogonalisation in the time, not in the FLOPs" if r.get("muon") else "")
    of_peak = f"{r['fraction_of_peak']:.0%}" if "fraction_of_peak" in r else ""
    size = CONFIGS[r["config"]]
    return (f"| {r['row']} | {r['config']} ({size['n_layer']} x {size['n_embd']}) | {r['dtype']}{', compiled' if r['compile'] else ''} | "
            f"{r['tokens_per_s']:,.0f} | {of_peak} | {r['peak_memory_MB']:,} | {notes} |")


TABLE_HEAD = ["| row | size | dtype | tokens/s | of the peak | peak MB | notes |", "| --- | --- | --- | --- | --- | --- | --- |"]


def speed_table(record: dict, configs: tuple[str, ...] | None = None) -> str:
    """The record as markdown: the machine, its matmul peaks, the command, then one line per row
    (where configs are given, only the training rows of these model sizes)."""
    peaks = record["matmul_peak_flops"]
    lines = [f"`{record['command']}` on {record['machine']} ({record['device']}, {record['threads']} threads, "
             f"torch {record['torch']}); matmul peak (2048 x 2048) fp32 {peaks['fp32'] / 1e9:,.0f} GFLOP/s"
             + (f", bf16 {peaks['bf16'] / 1e9:,.0f} GFLOP/s" if peaks["bf16"] else "") + ":", "", *TABLE_HEAD]
    lines += [row_line(r) for r in record["rows"]
              if configs is None or r["config"] in configs or r["row"] in ("generate", "serve")]
    return "\n".join(lines) + "\n"


def main() -> None:
    config, _, _ = parse_args(OPTIONS, "python bench.py [--rows=...] [--configs=...] [--json=FILE]", __doc__)
    if config["row"]:
        print(json.dumps(run_row(json.loads(config["row"]))))
        return
    import torch
    from machine import choose_device, choose_dtype, machine_name

    device = choose_device(config["device"])
    dtypes = ["bfloat16", "float32"] if config["dtype"] == "both" else [choose_dtype(config["dtype"], device)]
    rows, configs = config["rows"].split(","), config["configs"].split(",")
    for name in configs:
        if name not in CONFIGS:
            raise UserError(f"unknown config {name!r}: choose among {', '.join(CONFIGS)}")
    for row in rows:
        if row not in OPTIONS["rows"][0].split(","):
            raise UserError(f"unknown row {row!r}: choose among {OPTIONS['rows'][0]}")
    if config["json"] and not Path(config["json"]).resolve().parent.is_dir():
        raise UserError(f"--json={config['json']}: its folder does not exist (said now, not after the benchmark)")
    # the bf16 peak only where a row runs in bf16: where the CPU lacks it, the emulated matmul takes long
    peaks = {"fp32": matmul_peak(torch, device, torch.float32),
             "bf16": matmul_peak(torch, device, torch.bfloat16) if "bfloat16" in dtypes else None}
    record = {"command": "python bench.py" + "".join(f" {a}" for a in sys.argv[1:]), "machine": machine_name(),
              "device": device, "threads": torch.get_num_threads(), "torch": torch.__version__,
              "matmul_peak_flops": peaks, "rows": []}
    print(speed_table(record), end="", flush=True)
    for row in rows:
        for name in configs if row not in ("generate", "serve") else ["ref"]:
            for dtype in dtypes:
                spec = {"kind": row, "config": name, "dtype": dtype, "compile": config["compile"], "device": device,
                        "steps": config["steps"], "warmup": config["warmup"], "batch_size": config["batch_size"],
                        "profile": config["profile"],
                        "peak_bf16": peaks["bf16"], "peak_fp32": peaks["fp32"]}
                done = subprocess.run([sys.executable, __file__, f"--row={json.dumps(spec)}"], capture_output=True, text=True)
                if done.returncode != 0:
                    raise SystemExit(f"row {row}/{name}/{dtype} failed:\n{done.stderr[-2000:]}")
                record["rows"].append(json.loads(done.stdout.strip().splitlines()[-1]))
                print(row_line(record["rows"][-1]), flush=True)
                print(record["rows"][-1].pop("profile", ""), end="")
    text = json.dumps(record, indent=1)
    if config["json"]:
        atomic_write({Path(config["json"]): lambda f: f.write(text.encode())})
        print(f"written to {config['json']}")
    if config["readme"]:  # the README's table (the default size, generation), docs/speed.md's (all), their record
        updated = update_docs("bench", {ROOT / "README.md": speed_table(record, README_CONFIGS),
                                        ROOT / "docs" / "speed.md": speed_table(record)}, RECORD, text)
        print(f"updated {', '.join(str(p.relative_to(ROOT)) for p in updated)} and {RECORD.relative_to(ROOT)}"
              if updated else "README.md and docs/speed.md have no bench markers: left as they are")


if __name__ == "__main__":
    run(main)
