"""Drafting across vocabularies: a draft whose tokenizer does not line up with the target's.

The target's committed tokens become bytes; the draft sees that text in its own tokens (its
cache kept in sync incrementally: only a short look-behind window at the boundary is
re-tokenized, never the whole context); its proposal becomes text again and is re-tokenized into
target tokens. Such proposals carry no q, so they are verified like n-gram proposals: greedy by
match, sampled by accepting while the target's own sample agrees. Both are exact for any
proposal, whatever the two tokenizers do (Timor et al. 2025's string-level exact match).

Boundary cases, each handled here:
- a target token that ends inside a multi-byte UTF-8 character: the draft sees the text up to
  the last complete character, and its proposal must begin with the pending bytes;
- a draft token that ends inside a target token: the proposal's last target token may be cut
  short, so it is dropped (unless the draft stopped at its end of text);
- the draft's own special tokens and EOS: the proposal stops there;
- BOS and chat templates: by default the draft reads the target's whole prompt (the target's
  chat template and system prompt included) as text. Measured against the draft's own chat
  template and against the user's text alone (bench/draft_format_bench.py, docs/MEASUREMENTS.md),
  this accepts the most: Gemma 3 270M for Qwen2.5-Coder-1.5B 48% against 41% and 40%. A caller
  may still give the draft its own prompt (`set_prompt`); only the continuation is translated.
"""

from __future__ import annotations

import time
from collections.abc import Sequence

import numpy as np

from .backends import Backend, common_prefix, sync
from .drafters import Draft

# Under sampling, TLI accepts more than text-level matching when the vocabularies overlap
# enough for the draft's restricted distribution to stay close to its own; below this share
# of the target's vocabulary, text-level is used.
TLI_MIN_OVERLAP = 0.3
LOOKBEHIND_BYTES = 16  # re-tokenize from a draft token boundary at least this far back
EXTRA_DRAFT_TOKENS = 2  # segmentations differ: draft a little more text than k target tokens


def complete_utf8(data: bytes) -> int:
    """Length of the longest prefix of `data` that ends on a whole UTF-8 character."""
    n = len(data)
    for back in range(1, min(4, n) + 1):
        b = data[n - back]
        if b & 0xC0 == 0x80:  # a continuation byte: keep looking for the lead byte
            continue
        need = 1 if b < 0x80 else 2 if b >> 5 == 0b110 else 3 if b >> 4 == 0b1110 else 4
        return n if back >= need else n - back
    return n


class TextDrafter:
    """A model draft for a target whose tokenizer differs, translated through text."""

    def __init__(self, draft: Backend, target: Backend, *,
                 target_prompt: Sequence[int] | None = None,
                 draft_prompt: Sequence[int] | None = None) -> None:
        self.draft, self.target = draft, target
        self.name = f"{draft.name} (text-level)"
        self.translate_seconds = 0.0  # time spent converting between the two vocabularies
        self.realigned = 0  # re-tokenizations that had to start from scratch
        self._target_prompt: list[int] | None = None
        if target_prompt is not None:
            self.set_prompt(target_prompt, draft_prompt)

    def set_prompt(self, target_prompt: Sequence[int],
                   draft_prompt: Sequence[int] | None = None) -> None:
        """Start a new generation: the target's prompt, and optionally the same request in
        another form for the draft. Without one (the default everywhere, the measured best) the
        draft reads the target's prompt as text. A context that does not start with the last
        prompt starts over this way (a new bench run, a new server request)."""
        self._target_prompt = list(target_prompt)
        if draft_prompt is None:
            text = self._bytes(target_prompt).decode("utf-8", errors="replace")
            draft_prompt = self.draft.tokenize(text)
        self._prompt = list(draft_prompt)
        self._tokens: list[int] = []  # draft tokens of the continuation's text so far
        self._ends: list[int] = []  # byte offset where each of those tokens ends
        self._text = b""  # the bytes they cover

    @property
    def _n_prompt(self) -> int:
        return len(self._target_prompt or ())

    def _bytes(self, tokens: Sequence[int]) -> bytes:
        eos = self.target.eos_ids
        return b"".join(self.target.token_bytes(t) for t in tokens if t not in eos)

    # -- target text -> draft tokens ------------------------------------------------------
    def _continuation(self, context: Sequence[int]) -> bytes:
        tp = self._target_prompt
        if tp is None or list(context[: len(tp)]) != tp:
            self.set_prompt(context)
        return self._bytes(context[self._n_prompt:])

    def _sync_text(self, data: bytes) -> None:
        """Make self._tokens the draft's tokens for `data` (whole characters only),
        re-tokenizing only from a token boundary LOOKBEHIND_BYTES before the first change."""
        common = common_prefix(self._text, data)
        keep = 0
        while keep < len(self._ends) and self._ends[keep] <= common - LOOKBEHIND_BYTES:
            keep += 1
        start = self._ends[keep - 1] if keep else 0
        tokens, ends = self._tokenize(data[start:], start)
        if tokens is None:  # the draft's tokenizer does not round-trip this piece
            self.realigned += 1
            keep, start = 0, 0
            tokens, ends = self._tokenize(data, 0)
            if tokens is None:
                tokens, ends = [], []
                data = b""
        self._tokens = self._tokens[:keep] + tokens
        self._ends = self._ends[:keep] + ends
        self._text = data

    def _tokenize(self, piece: bytes, offset: int):
        if not piece:
            return [], []
        try:  # a draft token boundary may fall inside a character: then start over
            text = piece.decode("utf-8")
        except UnicodeDecodeError:
            return None, None
        tokens = self.draft.tokenize(text, add_bos=False)
        ends, pos = [], offset
        for t in tokens:
            pos += len(self.draft.token_bytes(t))
            ends.append(pos)
        if pos - offset != len(piece):  # e.g. a SentencePiece space prefix was added
            return None, None
        return tokens, ends

    def _follow(self, context: Sequence[int]) -> bytes:
        """Bring the draft's tokens up to the target's context (whole characters); return the
        bytes of a character the target has only begun."""
        t0 = time.perf_counter()
        data = self._continuation(context)
        whole = complete_utf8(data)
        self._sync_text(data[:whole])
        self.translate_seconds += time.perf_counter() - t0
        return data[whole:]

    # -- the protocol -----------------------------------------------------------------------
    def propose(self, context: Sequence[int], k: int) -> Draft:
        pending = self._follow(context)
        logits = sync(self.draft, self._prompt + self._tokens)[0]
        generated: list[int] = []
        ended = False
        for i in range(k + EXTRA_DRAFT_TOKENS):
            token = int(np.argmax(logits))
            if token in self.draft.eos_ids:
                ended = True
                break
            generated.append(token)
            if i < k + EXTRA_DRAFT_TOKENS - 1:
                logits = self.draft.eval([token])[0]

        t1 = time.perf_counter()
        proposal = b"".join(self.draft.token_bytes(t) for t in generated)
        tokens: list[int] = []
        if proposal.startswith(pending):  # else the draft disagrees at once: propose nothing
            cut = complete_utf8(proposal)
            tokens = self._to_target(proposal[:cut], skip=len(pending))
            if tokens and not (ended and cut == len(proposal)):
                tokens = tokens[:-1]  # may be cut short where the draft's text ended
        self.translate_seconds += time.perf_counter() - t1
        return Draft(tokens[:k])

    def _to_target(self, data: bytes, *, skip: int) -> list[int]:
        """Target tokens for data[skip:], where data[:skip] are bytes of a character the
        target has already begun: tokenized whole, the tokens covering them are dropped (if
        a token straddles that boundary, nothing can be proposed)."""
        if len(data) <= skip:
            return []
        tokens = self.target.tokenize(data.decode("utf-8"), add_bos=False)
        pieces = [self.target.token_bytes(t) for t in tokens]
        if b"".join(pieces) != data:
            return []  # the target's tokenizer would not round-trip it: propose nothing
        pos = 0
        for i, piece in enumerate(pieces):
            if pos == skip:
                return tokens[i:]
            pos += len(piece)
            if pos > skip:
                return []
        return []

    def close(self) -> None:
        self.draft.close()


class TLIDrafter(TextDrafter):
    """Token-level intersection (Timor et al. 2025) for sampled decoding: the draft's
    distribution is restricted to the token strings the target also has (compared as bytes),
    renormalised and mapped into target ids, so its proposals carry a proper q and are verified
    by rejection sampling, which keeps the target's distribution exactly while accepting more
    than text-level matching does under sampling (a sample agrees less often than a
    distribution overlaps). The context still reaches the draft through text."""

    def __init__(self, draft: Backend, target: Backend, *, sampling, rng,
                 target_prompt: Sequence[int] | None = None,
                 draft_prompt: Sequence[int] | None = None) -> None:
        from .sampling import make_transform

        super().__init__(draft, target, target_prompt=target_prompt, draft_prompt=draft_prompt)
        self.name = f"{draft.name} (TLI)"
        self._transform = None if sampling.greedy else make_transform(sampling)
        self._rng = rng
        self.draft_ids, self.target_ids = shared_token_map(draft, target)
        self.shared = len(self.draft_ids)

    def propose(self, context: Sequence[int], k: int) -> Draft:
        from .sampling import sample

        if self._follow(context) or not self.shared:
            return Draft([])  # the target has begun a character: no whole token to propose
        logits = sync(self.draft, self._prompt + self._tokens)[0]
        tokens: list[int] = []
        qs: list[np.ndarray] = []
        for i in range(k):
            t1 = time.perf_counter()
            row = logits[self.draft_ids]  # the draft's logits on shared strings only
            if self._transform is None:
                j = int(np.argmax(row))
            else:
                q_shared = self._transform(row)
                j = sample(q_shared, self._rng)
                q = np.zeros(self.target.n_vocab)
                np.add.at(q, self.target_ids, q_shared)
                qs.append(q)
            tokens.append(int(self.target_ids[j]))
            self.translate_seconds += time.perf_counter() - t1
            if i < k - 1:
                logits = self.draft.eval([int(self.draft_ids[j])])[0]
        return Draft(tokens, np.stack(qs) if qs else None)


def shared_token_map(draft: Backend, target: Backend) -> tuple[np.ndarray, np.ndarray]:
    """(draft ids, target ids) of the token strings both vocabularies have, compared as the
    bytes they stand for (special tokens and EOS excluded)."""
    by_bytes: dict[bytes, int] = {}
    for t in range(target.n_vocab):
        if t in target.eos_ids:
            continue
        b = target.token_bytes(t)
        if b and b not in by_bytes:
            by_bytes[b] = t
    pairs = []
    for d in range(draft.n_vocab):
        if d in draft.eos_ids:
            continue
        t = by_bytes.get(draft.token_bytes(d))
        if t is not None:
            pairs.append((d, t))
    if not pairs:
        return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64)
    d_ids, t_ids = zip(*pairs)
    return np.asarray(d_ids, dtype=np.int64), np.asarray(t_ids, dtype=np.int64)
