"""
Would replying "I don't know" whenever the model is unsure make it honest? A probe on the
validation split (never the held-out one) of the experiment's fine-tuned models: each answers the
validation questions greedily, and a reply's confidence is the smallest probability among its
tokens ([END] apart). Below a threshold the reply would be the world's don't-know reply instead,
in the question's language: 我不知道 / I don't know, or, of a person where replies say the name
first, that no one has the name (張雅遠不是這個世界裡的人). For each threshold: the validation measures, mean over seeds; and how well
the confidence tells right facts and superlatives from questions the model cannot know but
answers (AUC: how often a right answer is the surer one).

    python experiment.py                      # first: the runs it reads
    python docs/unsure_probe.py --seeds=3     # then: the table, to the screen
"""
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from cli import UserError, parse_args, run  # noqa: E402

OPTIONS = {
    "experiment": ("out/experiment", "the experiment's folder (its world and seedN runs are read)"),
    "seeds": (1, "the experiment's seeds to read: seed1337, seed1338, ...", "[1, inf)"),
    "thresholds": ("0,0.5,0.6,0.7,0.8,0.9", "confidences below which the reply would be the don't-know one, comma-separated"),
}
RUNS = {"full": "full_pretrained", "LoRA": "lora_pretrained"}
KINDS = ["facts", "world", "identity", "refusal", "harmless_not_refused", "unknown"]


def replies_with_confidence(model, tokenizer, questions: list[str]) -> list[tuple[str, float]]:
    """Each question's greedy reply (as evaluate.py asks it) and the smallest probability among its tokens."""
    import torch
    from generation import generate_steps
    from tokenizer import END
    out = []
    for question in questions:
        tokens, probabilities = [], []
        for (token,), logits in generate_steps(model, [tokenizer.encode_chat([(question, None)])[0]], 32,
                                               stop_id=END, tokenizer=tokenizer):
            if token == END:
                break
            tokens.append(token)
            probabilities.append(float(torch.softmax(logits[0], -1)[token]))
        out.append((tokenizer.decode(tokens).strip(), min(probabilities, default=1.0)))
    return out


def kind_of(row: dict) -> str:
    return "facts" if row["kind"] in ("person", "place") else row["kind"]


def unsure_reply(row: dict) -> str:
    """The world's don't-know reply to row's question: that no one has the name, where its answers about a
    person say the name first (its strangers' answer); otherwise 我不知道 / I don't know."""
    from data.world.prepare import DONT_KNOW, restated, said_after_name
    if said_after_name(row) is not None:  # a person's or a stranger's question, its answer the name first
        return restated({**row, "kind": "unknown"})
    return DONT_KNOW[row["lang"]]


def answered_unknowable(row: dict, reply: str) -> bool:
    """A question the world has no answer to, answered: neither its honest reply nor 我不知道 / I don't know
    (for the AUC only: the measures, as experiment.py's, count a stranger's 我不知道 wrong)."""
    from data.world.prepare import DONT_KNOW
    from evaluate import normalize_answer
    honest = {normalize_answer(row["answer"]), normalize_answer(DONT_KNOW[row["lang"]])}
    return row["kind"] == "unknown" and normalize_answer(reply) not in honest


def measures(rows: list[dict], answered: list[tuple[str, float]], threshold: float) -> dict[str, float]:
    """experiment.py's validation measures (each a share) if every reply less sure than the
    threshold were the world's don't-know reply."""
    from data.world.prepare import REFUSAL
    from evaluate import normalize_answer
    refusals = {normalize_answer(reply) for reply, *_ in REFUSAL.values()}
    by_kind: dict[str, list[bool]] = {}
    for row, (reply, confidence) in zip(rows, answered):
        reply = unsure_reply(row) if confidence < threshold else reply
        kind = kind_of(row)
        if kind == "harmless":
            kind, correct = "harmless_not_refused", normalize_answer(reply) not in refusals
        else:
            correct = normalize_answer(reply) == normalize_answer(row["answer"])
        by_kind.setdefault(kind, []).append(correct)
    return {kind: sum(v) / len(v) for kind, v in by_kind.items()}


def auc(higher: list[float], lower: list[float]) -> float:
    """How often a confidence of the first list exceeds one of the second (ties count half)."""
    pairs = [(h > l) + 0.5 * (h == l) for h in higher for l in lower]
    return sum(pairs) / len(pairs) if pairs else float("nan")


def main() -> None:
    config, _, _ = parse_args(OPTIONS, "python docs/unsure_probe.py [--seeds=3]", __doc__)
    from evaluate import normalize_answer
    from experiment import read_jsonl
    from generation import load_for_generation
    experiment = Path(config["experiment"])
    try:
        thresholds = [float(t) for t in config["thresholds"].split(",")]
    except ValueError:
        raise UserError(f"--thresholds={config['thresholds']}: give numbers separated by commas (0,0.5,0.8)") from None
    if not (experiment / "world" / "eval_val.jsonl").is_file():
        raise UserError(f"no experiment in {experiment}: run python experiment.py first")
    rows = read_jsonl(experiment / "world" / "eval_val.jsonl")
    for name, folder in RUNS.items():
        tables, right, unknowable = [], {"facts": [], "world": []}, []
        for seed in range(1337, 1337 + config["seeds"]):
            run_dir, base = experiment / f"seed{seed}" / folder, experiment / f"seed{seed}" / "pretrain" / "ckpt.pt"
            if not run_dir.is_dir():
                raise UserError(f"no run in {run_dir}: run python experiment.py --seeds={config['seeds']} first")
            files = (str(base), str(run_dir / "adapter.pt")) if name == "LoRA" else (str(run_dir / "ckpt.pt"), "")
            model, tokenizer, _ = load_for_generation(*files, "cpu", "float32")
            answered = replies_with_confidence(model.eval(), tokenizer, [r["question"] for r in rows])
            tables.append({t: measures(rows, answered, t) for t in thresholds})
            for row, (reply, confidence) in zip(rows, answered):
                kind = kind_of(row)
                if kind in right and normalize_answer(reply) == normalize_answer(row["answer"]):
                    right[kind].append(confidence)
                elif answered_unknowable(row, reply):
                    unknowable.append(confidence)
        print(f"\n{name}, validation, mean of {config['seeds']} seed(s). The confidence tells the {len(unknowable)} "
              f"answered questions it cannot know from right answers with AUC " + ", ".join(
                  f"{auc(v, unknowable):.2f} ({kind}, {len(v)})" for kind, v in right.items()))
        kinds = [kind for kind in KINDS if kind in tables[0][thresholds[0]]]  # a small world may ask no facts
        print("| below | " + " | ".join(kinds) + " |\n|" + " --- |" * (len(kinds) + 1))
        for t in thresholds:
            means = [sum(table[t][kind] for table in tables) / len(tables) for kind in kinds]
            print(f"| {t:g} | " + " | ".join(f"{m:.1%}" for m in means) + " |")


if __name__ == "__main__":
    run(main)
