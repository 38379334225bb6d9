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
    assert train["muon"] and not lora["muon"]  # pretraining steps pretrain.py's optimizer, fine-tuning AdamW
    assert train["optimizer_state_MB"] > 0  # Muon's momenta and AdamW's moments both counted
    assert lora["training_state_MB"] < 0.5 * train["training_state_MB"]  # LoRA keeps no gradients or moments for W
    assert "aten::mm" in result.stdout  # the profile: where the step's time goes


def test_the_speed_tables_show_the_recorded_results():
    """README.md's speed table (the default size, and generation) and docs/speed.md's (every row) are
    what bench.py renders from the record it wrote beside them: no number of theirs was copied by hand."""
    from bench import README_CONFIGS, RECORD, speed_table
    from cli import readme_markers
    begin, end = readme_markers("bench")
    record = json.loads(RECORD.read_text(encoding="utf-8"))
    for doc, configs in ((RECORD.parent.parent / "README.md", README_CONFIGS), (RECORD.parent / "speed.md", None)):
        block = doc.read_text(encoding="utf-8").split(begin, 1)[1].split(end, 1)[0]
        assert block == "\n" + speed_table(record, configs)
    assert any(r["row"] == "pretrain" and r["config"] == "ref" for r in record["rows"])


def test_docs_blocks_are_replaced_whole_and_need_their_markers(tmp_path):
    """update_docs rewrites only what lies between a document's markers, writes the record with
    it, and leaves a document without markers (and then the record) untouched."""
    from cli import readme_markers, update_docs
    begin, end = readme_markers("bench")
    marked, plain, record = tmp_path / "marked.md", tmp_path / "plain.md", tmp_path / "record.json"
    marked.write_text(f"intro\n{begin}\nold table\n{end}\noutro\n")
    plain.write_text("no markers\n")
    assert update_docs("bench", {marked: "new table\n", plain: "x\n"}, record, "{}") == [marked]
    assert marked.read_text() == f"intro\n{begin}\nnew table\n{end}\noutro\n"
    assert plain.read_text() == "no markers\n" and record.read_text() == "{}"
    record.unlink()
    assert update_docs("bench", {plain: "x\n"}, record, "{}") == [] and not record.exists()
