"""Stage 1: completions and the target's distribution at every completion position.

For each prompt, a completion (the target's own: greedy or sampled; or the draft's, scored by
the target: DistillSpec's on-policy data), then ONE batched evaluation of the target over the
prompt's last token and the completion, which gives its distribution at every completion
position at once. Each distribution is kept as its top-k log-probabilities and the mass of the
rest (loss.py collapses the rest into one outcome). One file per sequence, written atomically,
so an interrupted stage resumes at the first sequence it has not written.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..core.backend import Backend, common_prefix

DEFAULT_TOP_K = 32
DEFAULT_MAX_NEW_TOKENS = 96


@dataclass(frozen=True)
class Scored:
    """One sequence: the prompt, a completion, and the target at each completion position:
    ids/logp [n, k] (top-k tokens and their log-probabilities), rest [n] (mass outside)."""

    prompt: np.ndarray
    completion: np.ndarray
    ids: np.ndarray
    logp: np.ndarray
    rest: np.ndarray

    @property
    def tokens(self) -> np.ndarray:
        return np.concatenate([self.prompt, self.completion])

    def save(self, path: Path) -> None:
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        try:
            with open(tmp, "wb") as f:
                np.savez(f, prompt=self.prompt, completion=self.completion, ids=self.ids,
                         logp=self.logp, rest=self.rest)
            os.replace(tmp, path)
        finally:
            tmp.unlink(missing_ok=True)

    @classmethod
    def load(cls, path: Path) -> Scored:
        with np.load(path) as z:
            return cls(z["prompt"], z["completion"], z["ids"], z["logp"], z["rest"])


def top_k(logits: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(ids [n, k] most likely first, their log-probabilities, the mass of the rest [n])."""
    x = np.asarray(logits, dtype=np.float64)
    m = x.max(axis=-1, keepdims=True)
    logz = m + np.log(np.exp(x - m).sum(axis=-1, keepdims=True))
    k = min(k, x.shape[-1])
    ids = np.argpartition(-x, k - 1, axis=-1)[:, :k]
    order = np.argsort(-np.take_along_axis(x, ids, -1), axis=-1)
    ids = np.take_along_axis(ids, order, -1)
    logp = np.take_along_axis(x, ids, -1) - logz
    rest = np.clip(1.0 - np.exp(logp).sum(-1), 0.0, 1.0)
    return ids.astype(np.int32), logp.astype(np.float32), rest.astype(np.float32)


def score(target: Backend, prompt: Sequence[int], completion: Sequence[int], *,
          k: int = DEFAULT_TOP_K) -> Scored:
    """The target's top-k at every completion position, from one batched evaluation of the
    prompt's last token and the completion but its last token (row i predicts completion[i])."""
    prompt, completion = list(prompt), list(completion)
    if not completion:
        raise ValueError("score needs a completion of at least one token")
    keep = common_prefix(target.tokens, prompt[:-1])
    target.rewind(keep)
    if keep < len(prompt) - 1:
        target.eval(prompt[keep:-1], all_logits=False)
    logits = np.asarray(target.eval([prompt[-1], *completion[:-1]], all_logits=True))
    ids, logp, rest = top_k(logits, k)
    return Scored(np.asarray(prompt, np.int32), np.asarray(completion, np.int32), ids, logp,
                  rest)


Complete = Callable[[list[int], int], list[int]]  # (prompt tokens, seed) -> completion


@dataclass(frozen=True)
class Job:
    """One sequence to make: where it goes, its prompt, and who writes the completion."""

    path: Path
    prompt: list[int]
    complete: Complete
    seed: int


def make(jobs: Sequence[Job], target: Backend, *, k: int,
         advance: Callable[[int], None] = lambda n: None,
         out_of_time: Callable[[], bool] = lambda: False) -> int:
    """Write every job's sequence not written yet; returns how many remain (0: done)."""
    todo = [j for j in jobs if not j.path.exists()]
    advance(len(jobs) - len(todo))
    for n, job in enumerate(todo):
        if out_of_time():
            return len(todo) - n
        completion = job.complete(job.prompt, job.seed)
        if completion:
            score(target, job.prompt, completion, k=k).save(job.path)
        else:  # a prompt answered with nothing teaches nothing, but it is done
            Scored(np.asarray(job.prompt, np.int32), np.zeros(0, np.int32),
                   np.zeros((0, k), np.int32), np.zeros((0, k), np.float32),
                   np.zeros(0, np.float32)).save(job.path)
        advance(1)
    return 0


def load_all(paths: Sequence[Path]) -> list[Scored]:
    """The sequences written, those with a completion."""
    out = [Scored.load(p) for p in paths if p.exists()]
    return [s for s in out if len(s.completion)]


__all__ = ["DEFAULT_MAX_NEW_TOKENS", "DEFAULT_TOP_K", "Job", "Scored", "load_all", "make",
           "score", "top_k"]
