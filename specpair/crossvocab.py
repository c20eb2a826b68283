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
- BOS and chat templates: the draft's prompt is built by the caller in the draft's own format
  (its chat template, or plain text), and only the continuation is translated.
"""

from __future__ import annotations

import time
from collections.abc import Sequence

import numpy as np

from .backends import Backend, sync
from .drafters import Draft

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
        """Start a new generation: the target's prompt, and the same request in the draft's own
        format (its chat template, say). Without one the draft reads the target's prompt as
        plain text. A context that does not start with the last prompt starts over this way
        (a new bench run, a new server request)."""
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
        common = 0
        for a, b in zip(self._text, data):
            if a != b:
                break
            common += 1
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

    # -- the protocol -----------------------------------------------------------------------
    def propose(self, context: Sequence[int], k: int) -> Draft:
        t0 = time.perf_counter()
        data = self._continuation(context)
        whole = complete_utf8(data)
        self._sync_text(data[:whole])
        pending = data[whole:]  # a character the target has only begun
        self.translate_seconds += time.perf_counter() - t0

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
