"""Long copies: when the text repeats a long stretch of what was already written (a file returned
with one change, a quoted passage, an answer repeated), propose the source's own continuation for
as long as it is being copied, up to K = 64, well past the suffix tree's depth.

What llama.cpp's `--spec-type ngram-mod` does (common/ngram-mod.cpp: a table keyed by a hash of
the last 24 tokens, valued by the token that followed, chained to draft 48-64 tokens or nothing),
with its weaknesses addressed:
- a match is an exact key, not a hash slot: a collision never proposes a wrong copy;
- the draft is the source's continuation, cut where this copy is likely to part from its source:
  before a source position where a copy from there was rejected before, and before a source
  token at which copies were rejected more often than not (an edit that renames a name parts
  from the source at every occurrence of that name: after the first, the copies stop there);
- its kind says how long the match is ("copy 16-31"), so auto learns acceptance per match
  length and per position and chooses K between a short draft and 64 (auto/adaptive.py);
- it costs O(new tokens) a round: the index grows with the text, nothing is rescanned.

The index maps each window of `n_match` tokens to the position after its latest occurrence (the
latest wins, as in ngram-mod: recent text is the likelier source). Written here rather than
taken from a library because it is a dict over the context; the suffix tree (suffix_tree.py)
answers a different question (the most frequent continuation, to a bounded depth).
"""

from __future__ import annotations

from bisect import bisect_right, insort
from collections.abc import Sequence

from ..core.drafter import Draft, Drafter
from ..errors import InvalidOption

DEFAULT_N_MATCH = 12  # tokens a window must match: a dozen tokens rarely repeat by chance
MAX_MATCH = 64  # how far back a match is measured (its kind); longer counts as 64
# a copy drafts at most this many times the tokens it has matched: it earns K as it goes (12 ->
# 24, then 64 once 32 are matched). A long match that is not a copy is common (a summary
# repeats an 8- or 12-token phrase of its source, then goes its own way: 3 of 57 drafted tokens
# accepted in such a reply) and a rejected 40-token draft costs ~15 steps on a 2-core CPU
MAX_FACTOR = 2.0
BUCKETS = (16, 32, 64)  # match lengths that make a kind: "copy 12-15", "copy 16-31", ...


def kind_of(match: int, n_match: int) -> str:
    lo = n_match
    for hi in BUCKETS:
        if match < hi:
            return f"copy {lo}-{hi - 1}"
        lo = hi
    return f"copy {BUCKETS[-1]}+"


class CopyDrafter(Drafter):
    """Proposes the continuation of the latest earlier occurrence of the context's last
    `n_match` tokens, up to k tokens and MAX_FACTOR times the match, cut before the point where
    a copy from that source was last rejected. Proposals carry no probabilities (verified by
    match: exact)."""

    name = "copy"
    memoryless = True  # a copy goes on, or parts, with about the same odds at every token

    def __init__(self, *, n_match: int = DEFAULT_N_MATCH) -> None:
        if not 2 <= n_match <= MAX_MATCH:
            raise InvalidOption(f"a copy's match must be 2..{MAX_MATCH} tokens, got {n_match}")
        self.n_match = n_match
        self._tokens: list[int] = []
        self._index: dict[tuple[int, ...], int] = {}
        self._indexed = 0  # windows ending before this position are in the index
        self._parted: list[int] = []  # source positions where a copy was rejected, sorted
        # per source token: how often a copy through it was accepted there and rejected there
        self._through: dict[int, list[int]] = {}
        self._last: tuple[int, int, list[int]] | None = None  # (context length, source, draft)
        self.work = 0  # windows indexed and tokens compared: what a round costs (tests)

    def begin(self, prompt: Sequence[int]) -> None:
        self._reset()
        self._sync(prompt)  # the prompt is indexed here, booked as setup (core/decode.py)

    def _reset(self) -> None:
        self._tokens, self._index, self._indexed = [], {}, 0
        self._parted, self._through, self._last = [], {}, None

    def _sync(self, context: Sequence[int]) -> None:
        """Extend the index to the context (which extends the last one within a generation;
        anything else starts over)."""
        n = len(context)
        known = len(self._tokens)
        if n < known or (known and context[known - 1] != self._tokens[-1]):
            self._reset()
            known = 0
        self._tokens.extend(context[known:n])
        t, w = self._tokens, self.n_match
        # a window ending at i (tokens i-w..i-1) is indexed once a token follows it
        for i in range(max(self._indexed, w), n):
            self._index[tuple(t[i - w:i])] = i
            self.work += 1
        self._indexed = max(self._indexed, n)

    def _learn_parting(self) -> None:
        """Where the last proposal (and the source token after it) and what was then written
        part ways, if they did: a source position a later copy from there should not draft
        past, and one more rejection (or acceptance) for that source token."""
        if self._last is None:
            return
        at, source, draft = self._last
        after = source + len(draft)
        expected = draft + [self._tokens[after]] if after < at else draft
        written = self._tokens[at:at + len(expected)]
        if len(written) < len(expected) and written == expected[:len(written)]:
            return  # not decided yet: too few tokens written since
        self._last = None
        for j, (a, b) in enumerate(zip(expected, written)):
            self.work += 1
            record = self._through.setdefault(a, [0, 0])
            if a != b:
                record[1] += 1
                if source + j not in self._parted:
                    insort(self._parted, source + j)
                return
            record[0] += 1

    def _parts_at(self, token: int) -> bool:
        """Copies through this source token were rejected there more often than not."""
        record = self._through.get(token)
        return record is not None and record[1] > record[0]

    def propose(self, context: Sequence[int], k: int) -> Draft:
        self._sync(context)
        self._learn_parting()
        t, w, n = self._tokens, self.n_match, len(self._tokens)
        if n < w or k <= 0:
            return Draft([])
        source = self._index.get(tuple(t[n - w:n]))
        if source is None:
            return Draft([])
        match = w
        while match < MAX_MATCH and source - match - 1 >= 0 and \
                t[source - match - 1] == t[n - match - 1]:
            match += 1
            self.work += 1
        end = min(source + k, source + int(MAX_FACTOR * match), n)
        cut = bisect_right(self._parted, source - 1)  # the first parting at or after source
        if cut < len(self._parted):
            end = min(end, self._parted[cut])
        if self._through:  # the first token always: a copy that resumes there tests it again
            for i in range(source + 1, end):
                if self._parts_at(t[i]):
                    end = i
                    break
        draft = t[source:end]
        if not draft:
            return Draft([])
        self._last = (n, source, draft)
        return Draft(list(draft), kind=kind_of(match, w))

    def close(self) -> None:
        pass
