"""bench.py: a small training row, with its profile, in seconds."""
import json

from conftest import run_script


def test_bench_rows_report_throughput_against_the_peak(tmp_path):
    out = tmp_path / "bench.json"
    result = run_script("bench.py", "--rows=pretrain,lora", "--configs=small", "--steps=1", "--warmup=1",
                        "--batch_size=2", "--profile", f"--json={out}", check=True, timeout=300)
    report = json.loads(out.read_text())
    assert report["matmul_peak_flops"]["fp32"] > 0
    train, lora = report["rows"]
    assert train["row"] == "pretrain" and train["tokens_per_s"] > 0 and 0 < train["fraction_of_peak"] < 1.5
    assert train["peak_memory_MB"] > 0 and lora["row"] == "lora"
    assert lora["training_state_MB"] < 0.5 * train["training_state_MB"]  # LoRA keeps no gradients or moments for W
    assert "aten::mm" in result.stdout  # the profile: where the step's time goes
