"""A toy backend for fast tests: a bigram "language model" over a tiny vocabulary.

Logits depend only on the previous token (a V x V table), token i decodes to one letter, and the
cache is a plain list, so decode-loop invariants can be checked exactly and quickly."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from specpair.core.drafter import Draft, Drafter

LETTERS = "abcdefghijklmnopqrstuvwxyz"


def walk_table(v: int = 26) -> np.ndarray:
    """Greedy walk a -> b -> c -> ... -> z -> a: predictable text, nothing random (a prompt
    holding the cycle repeats, so lookups draft)."""
    table = np.full((v, v), -4.0, dtype=np.float32)
    for i in range(v):
        table[i, (i + 1) % v] = 4.0
    return table


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
        self.device = "toy"

    @property
    def n_past(self) -> int:
        return len(self._tokens)

    @property
    def tokens(self) -> list[int]:
        return self._tokens

    def tokenize(self, text: str, *, add_bos: bool = True, special: bool = True) -> list[int]:
        return [LETTERS.index(c) for c in text]

    def token_bytes(self, token: int) -> bytes:
        return LETTERS[token].encode()

    def chat_prompt(self, messages) -> str:
        if isinstance(messages, str):
            return messages
        return "".join(m["content"] for m in messages)  # letters only: a toy "template"

    def eval(self, tokens: Sequence[int], *, all_logits: bool = True) -> np.ndarray:
        assert len(self._tokens) + len(tokens) <= self.n_ctx, "context overflow"
        self.evals.append(len(tokens))
        self._tokens.extend(tokens)
        rows = self.table[list(tokens)]
        return rows if all_logits else rows[-1:]

    def rewind(self, n_past: int) -> None:
        assert 0 <= n_past <= len(self._tokens)
        del self._tokens[n_past:]

    def synchronize(self) -> None:
        pass

    def close(self) -> None:
        pass


def random_table(v: int, seed: int, sharpness: float = 3.0) -> np.ndarray:
    return np.random.default_rng(seed).normal(size=(v, v)) * sharpness


class FakeClock:
    """Simulated seconds: toy backends advance it by their hand-set costs, the decode loop
    reads it (decode_steps(clock=...)). Deterministic, and no test sleeps."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


class ScriptBackend(ToyBackend):
    """A target whose greedy output is a fixed script: at position j its logits peak at
    script[j + 1] (EOS past the end). Evaluating n tokens costs `cost(n)` simulated seconds."""

    def __init__(self, script, *, vocab: int, clock: FakeClock, cost, n_ctx: int = 4096) -> None:
        super().__init__(np.zeros((vocab, vocab)), eos=vocab - 1, n_ctx=n_ctx, name="script")
        self.script, self.clock, self.cost = list(script), clock, cost

    def eval(self, tokens, *, all_logits: bool = True):
        assert len(self._tokens) + len(tokens) <= self.n_ctx, "context overflow"
        self.evals.append(len(tokens))
        self.clock.now += self.cost(len(tokens))
        start = len(self._tokens)
        self._tokens.extend(tokens)
        rows = np.zeros((len(tokens), self.n_vocab), dtype=np.float32)
        for i in range(len(tokens)):
            nxt = start + i + 1
            rows[i, self.script[nxt] if nxt < len(self.script) else self.n_vocab - 1] = 5.0
        return rows if all_logits else rows[-1:]


class OracleDrafter(Drafter):
    """A model-like drafter that knows the script: right with probability `accuracy` at each
    position (else it proposes a wrong token), at `cost` simulated seconds per token."""

    def __init__(self, script, *, vocab: int, clock: FakeClock, cost: float, accuracy: float,
                 seed: int = 0, name: str = "oracle") -> None:
        self.script, self.vocab, self.clock, self.cost = list(script), vocab, clock, cost
        self.accuracy, self.rng, self.name = accuracy, np.random.default_rng(seed), name
        self.calls = 0

    def propose(self, context, k):
        self.calls += 1
        tokens = []
        for i in range(k):
            j = len(context) + i
            truth = self.script[j] if j < len(self.script) else self.vocab - 1
            right = self.rng.random() < self.accuracy
            tokens.append(truth if right else (truth + 1) % (self.vocab - 1))
            self.clock.now += self.cost
        return Draft(tokens)

    def close(self):
        pass


class MultiToy(ToyBackend):
    """A toy holding `n_seq` sequences whose logits depend on the previous token AND its
    position (a mix-up of two sequences' caches or positions shows in the text), evaluated
    together by `eval_many` (`MultiSequence`). `batches` records each call's parts."""

    def __init__(self, table: np.ndarray, *, n_seq: int, n_ctx: int = 256, **kw) -> None:
        super().__init__(table, n_ctx=n_ctx, **kw)
        self.n_seq = n_seq
        self._seqs: list[list[int]] = [[] for _ in range(n_seq)]
        self._tokens = self._seqs[0]
        self.batches: list[list[tuple[int, int]]] = []  # per call: (seq, rows)

    def _rows(self, tokens, start: int) -> np.ndarray:
        rows = self.table[list(tokens)].copy()
        for j in range(len(tokens)):  # position p favours token p mod V a little
            rows[j, (start + j) % self.n_vocab] += 3.0
        return rows

    def seq_tokens(self, seq: int):
        return self._seqs[seq]

    def eval_many(self, parts):
        from specpair.core.backend import check_eval

        assert len({p.seq for p in parts}) == len(parts)
        for p in parts:
            check_eval(len(self._seqs[p.seq]), len(p.tokens), self.n_ctx)
        self.batches.append([(p.seq, len(p.tokens)) for p in parts])
        out = []
        for p in parts:
            rows = self._rows(p.tokens, len(self._seqs[p.seq]))
            self._seqs[p.seq].extend(p.tokens)
            out.append(rows if p.all_logits else rows[-1:])
        return out

    def eval(self, tokens, *, all_logits: bool = True):
        from specpair.core.backend import EvalPart

        return self.eval_many([EvalPart(0, tokens, all_logits)])[0]

    def rewind_seq(self, seq: int, n_past: int) -> None:
        assert 0 <= n_past <= len(self._seqs[seq])
        del self._seqs[seq][n_past:]

    def rewind(self, n_past: int) -> None:
        self.rewind_seq(0, n_past)

    def copy_seq(self, src: int, dst: int, n: int) -> None:
        self._seqs[dst][:] = self._seqs[src][:n]
