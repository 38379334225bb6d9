"""
Exact-match evaluation: the model's greedy replies to questions, asked alone or turn by turn in
a conversation, compared with the expected answers as SQuAD compares them.
"""
from __future__ import annotations

import json
import re
import string

from cli import UserError, read_lines
from generation import greedy_replies


def normalize_answer(text: str) -> str:
    """Compare answers as SQuAD does: case, punctuation, articles and spaces do not count."""
    text = text.lower()
    text = "".join(ch for ch in text if ch not in string.punctuation and ch not in "，。、！？：；「」『』（）")
    text = re.sub(r"\b(a|an|the)\b", " ", text)
    return " ".join(text.split())


def greedy_answers(model, tokenizer, questions: list[str], max_new_tokens: int = 32) -> list[str]:
    """The model's greedy reply to each question asked alone, as the first turn of a chat."""
    return greedy_replies(model, tokenizer, [tokenizer.encode_chat([(q, None)])[0] for q in questions], max_new_tokens)


def greedy_conversations(model, tokenizer, conversations: list[list[str]], max_new_tokens: int = 32) -> list[list[str]]:
    """Each conversation's user turns asked one after another, as a chat user would: every
    turn's prompt holds the earlier questions and the model's own earlier replies (the oldest
    dropped when the context is full, as in sample.py)."""
    replies: list[list[str]] = [[] for _ in conversations]
    for turn in range(max(map(len, conversations), default=0)):
        active = [c for c, questions in enumerate(conversations) if turn < len(questions)]
        prompts = [tokenizer.chat_prompt(list(zip(conversations[c][:turn], replies[c])), conversations[c][turn],
                                         model.config.block_size, max_new_tokens)[0] for c in active]
        for c, reply in zip(active, greedy_replies(model, tokenizer, prompts, max_new_tokens)):
            replies[c].append(reply)
    return replies


def exact_match(model, tokenizer, rows: list[dict]) -> dict:
    """The model's greedy replies to {"question", "answer"} rows, scored."""
    return score(rows, greedy_answers(model, tokenizer, [r["question"] for r in rows]))


def score(rows: list[dict], replies: list[str]) -> dict:
    """Exact-match accuracy of replies to rows, overall and by "kind" where rows have one."""
    results = [{**r, "reply": reply, "correct": normalize_answer(reply) == normalize_answer(r["answer"])}
               for r, reply in zip(rows, replies)]
    by_kind: dict[str, list[bool]] = {}
    for r in results:
        by_kind.setdefault(r.get("kind", "all"), []).append(r["correct"])
    return {"accuracy": sum(r["correct"] for r in results) / max(1, len(results)), "count": len(results),
            "by_kind": {k: (sum(v) / len(v), len(v)) for k, v in by_kind.items()}, "results": results}


def read_questions(path: str) -> list[dict]:
    rows = []
    for number, line in enumerate(read_lines(path, "question file"), 1):
        if line.strip():
            try:
                row = json.loads(line)
            except (json.JSONDecodeError, RecursionError):
                row = None
            if not (isinstance(row, dict) and isinstance(row.get("question"), str) and isinstance(row.get("answer"), str)
                    and isinstance(row.get("kind", ""), str)):
                raise UserError(f'{path}:{number}: expected {{"question": "...", "answer": "..."}} (and a text "kind", if any)')
            rows.append(row)
    if not rows:
        raise UserError(f"{path} holds no questions: give a file with one JSON object a line, or leave --eval out")
    return rows
