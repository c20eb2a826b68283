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

from ..core.backend import Backend, common_prefix
from ..core.drafter import Draft, Drafter
from ..core.ops import RowSampler, argmax, to_numpy
from ..core.sampling import SamplingConfig
from ..core.text import complete_utf8

# Under sampling, TLI accepts more than text-level matching when the vocabularies overlap
# enough for the draft's restricted distribution to stay close to its own; below this share
# of the target's vocabulary, text-level is used.
TLI_MIN_OVERLAP = 0.3
LOOKBEHIND_BYTES = 16  # re-tokenize from a draft token boundary at least this far back
EXTRA_DRAFT_TOKENS = 2  # segmentations differ: draft a little more text than k target tokens


class TextDrafter(Drafter):
    """A model draft for a target whose tokenizer differs, translated through text.

    Within a generation (begin .. end) the target's context only grows, so its bytes are
    converted as they come, and the draft's cache is caught up from the first draft token whose
    text changed (core/drafter.py's contract); a caller that never calls begin() gets the same
    result, checked against the whole prompt every round."""

    def __init__(self, draft: Backend, target: Backend, *,
                 target_prompt: Sequence[int] | None = None,
                 draft_prompt: Sequence[int] | None = None) -> None:
        self.draft, self.target = draft, target
        self.name = f"{draft.name} (text-level)"
        self.translate_seconds = 0.0  # time spent converting between the two vocabularies
        self.realigned = 0  # re-tokenizations that had to start from scratch
        self._target_prompt: list[int] | None = None
        self._begun = False
        if target_prompt is not None:
            self.set_prompt(target_prompt, draft_prompt)

    def begin(self, prompt: Sequence[int]) -> None:
        self.set_prompt(prompt)
        self._begun = True

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
        self._context = list(self._prompt)  # the draft's context: its prompt, then _tokens
        self._stable = 0  # leading tokens of _context unchanged since the last proposal
        self._converted = 0  # target continuation tokens already turned into bytes
        self._data = b""  # their bytes

    @property
    def _n_prompt(self) -> int:
        return len(self._target_prompt or ())

    def _bytes(self, tokens: Sequence[int]) -> bytes:
        eos = self.target.eos_ids
        return b"".join(self.target.token_bytes(t) for t in tokens if t not in eos)

    # -- target text -> draft tokens ------------------------------------------------------
    def _continuation(self, context: Sequence[int]) -> bytes:
        tp = self._target_prompt
        if tp is None or (not self._begun and list(context[: len(tp)]) != tp):
            self.set_prompt(context)
        n = len(context) - self._n_prompt
        if n < self._converted:  # not an extension: convert again
            self._converted, self._data = 0, b""
        self._data += self._bytes(context[self._n_prompt + self._converted:])
        self._converted = n
        return self._data

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
        n_prompt = len(self._prompt)
        self._stable = min(self._stable, n_prompt + keep)
        del self._context[n_prompt + keep:]
        self._context.extend(tokens)

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

    def _draft_logits(self):
        """The draft's logits after its context (cache caught up from the first token whose
        text changed); the catch-up is timed as sync_seconds."""
        t0 = time.perf_counter()
        b, ctx = self.draft, self._context
        base = min(self._stable, b.n_past, len(ctx) - 1)
        n = base + common_prefix(b.tokens[base:], ctx[base:-1])
        b.rewind(n)
        if n < len(ctx) - 1:
            b.eval(ctx[n:-1], all_logits=False)
        self.sync_seconds = time.perf_counter() - t0
        self._stable = len(ctx)
        return b.eval([ctx[-1]])[0]

    def _room(self, k: int) -> int:
        """Draft tokens that fit the draft's context after its own context."""
        return self.draft.n_ctx - len(self._context) + 1 - k

    # -- the protocol -----------------------------------------------------------------------
    def propose(self, context: Sequence[int], k: int) -> Draft:
        pending = self._follow(context)
        if not self._context or self._room(k + EXTRA_DRAFT_TOKENS) < 0:
            return Draft([])  # the draft's context is full: no proposal (decoding goes on)
        logits = self._draft_logits()
        generated: list[int] = []
        ended = False
        for i in range(k + EXTRA_DRAFT_TOKENS):
            token = argmax(logits)
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
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError:  # the draft wrote invalid UTF-8 mid-proposal: nothing to
            return []  # propose (the target decides, as in a plain step)
        tokens = self.target.tokenize(text, add_bos=False)
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

    # no close(): the draft backend is its loader's (see ModelDrafter)


class TLIDrafter(TextDrafter):
    """Token-level intersection (Timor et al. 2025) for sampled decoding: the draft's
    distribution is restricted to the token strings the target also has (compared as bytes),
    renormalised and mapped into target ids, so its proposals carry a proper q and are verified
    by rejection sampling, which keeps the target's distribution exactly while accepting more
    than text-level matching does under sampling (a sample agrees less often than a
    distribution overlaps). The context still reaches the draft through text.

    `shared` is the pair's (draft ids, target ids) of shared strings (tokenizers/shared.py),
    computed once per pair by the check, not once per request."""

    def __init__(self, draft: Backend, target: Backend, *, shared: tuple[np.ndarray, np.ndarray],
                 sampling: SamplingConfig, rng: np.random.Generator,
                 target_prompt: Sequence[int] | None = None,
                 draft_prompt: Sequence[int] | None = None) -> None:
        super().__init__(draft, target, target_prompt=target_prompt, draft_prompt=draft_prompt)
        self.name = f"{draft.name} (TLI)"
        self._sample = None if sampling.greedy else RowSampler(sampling)
        self._rng = rng
        self.draft_ids, self.target_ids = shared
        self.shared = len(self.draft_ids)

    def propose(self, context: Sequence[int], k: int) -> Draft:
        if self._follow(context) or not self.shared or self._room(k) < 0:
            return Draft([])  # the target has begun a character: no whole token to propose
        logits = self._draft_logits()
        tokens: list[int] = []
        qs: list[np.ndarray] = []
        for i in range(k):
            t1 = time.perf_counter()
            row = to_numpy(logits)[self.draft_ids]  # the draft's logits on shared strings only
            if self._sample is None:
                j = int(np.argmax(row))
            else:
                j, q_shared = self._sample(row, float(self._rng.random()))
                q = np.zeros(self.target.n_vocab, dtype=np.float32)
                np.add.at(q, self.target_ids, q_shared)
                qs.append(q)
            tokens.append(int(self.target_ids[j]))
            self.translate_seconds += time.perf_counter() - t1
            if i < k - 1:
                logits = self.draft.eval([int(self.draft_ids[j])])[0]
        return Draft(tokens, np.stack(qs) if qs else None)
