"""A toy backend for fast tests: a bigram "language model" over a tiny vocabulary.

Logits depend only on the previous token (a V x V table), token i decodes to one letter, and the
cache is a plain list, so decode-loop invariants can be checked exactly and quickly."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

LETTERS = "abcdefghijklmnopqrstuvwxyz"


class ToyBackend:
    def __init__(self, table: np.ndarray, *, eos: int | None = None, n_ctx: int = 256,
                 name: str = "toy") -> None:
        self.table = np.asarray(table, dtype=np.float32)
        self.n_vocab = self.table.shape[0]
        self.n_ctx = n_ctx
        self.eos_ids = frozenset() if eos is None else frozenset({eos})
        self.name = self.path = name
        self._tokens: list[int] = []
        self.evals: list[int] = []  # batch sizes seen, to check what the loop asks for

    @property
    def tokens(self) -> list[int]:
        return list(self._tokens)

    def tokenize(self, text: str, *, add_bos: bool = True) -> list[int]:
        return [LETTERS.index(c) for c in text]

    def token_bytes(self, token: int) -> bytes:
        return LETTERS[token].encode()

    def chat_prompt(self, user_message: str) -> str:
        return user_message

    def eval(self, tokens: Sequence[int], *, all_logits: bool = True) -> np.ndarray:
        assert len(self._tokens) + len(tokens) <= self.n_ctx, "context overflow"
        self.evals.append(len(tokens))
        self._tokens.extend(tokens)
        rows = self.table[list(tokens)]
        return rows if all_logits else rows[-1:]

    def rewind(self, n_past: int) -> None:
        assert 0 <= n_past <= len(self._tokens)
        del self._tokens[n_past:]

    def close(self) -> None:
        pass


def random_table(v: int, seed: int, sharpness: float = 3.0) -> np.ndarray:
    return np.random.default_rng(seed).normal(size=(v, v)) * sharpness
