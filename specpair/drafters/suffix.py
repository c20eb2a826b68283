"""Suffix decoding: draft from everything already written (Oliaro et al., NeurIPS 2025), as
vLLM's `method: "suffix"` does, with its option names.

Two trees (suffix_tree.py): one per request over its prompt and output so far, and one global
over finished outputs (`SuffixCache`, bounded by tokens and by requests, least recently added
out first). Each round, every suffix of the context that occurs in a tree is a candidate match;
from each, the proposal follows the most frequent continuation while its estimated probability
(the product of count ratios along the path) stays at least `min_token_prob`, for at most
`max_spec_factor` x the match length tokens. The candidate with the highest score (the sum of
its tokens' probabilities) wins, the longer match on ties, the request's own tree on ties
between trees. A proposal carries no q: it is verified by match, exact for any proposal.

In a request's own tree, the context's own suffixes end where the text ends, with no
continuation yet: those occurrences are left out of the probability (a string seen once before
and once now continues as it did before with probability 1, not 1/2).
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from ..core.drafter import Draft, Drafter
from ..core.files import locked, write_atomic
from ..errors import InvalidOption
from .suffix_tree import NODE_BYTES, Matcher, SuffixTree

# vLLM's defaults (SpeculativeConfig.suffix_decoding_*), and a token bound of our own
DEFAULT_MAX_TREE_DEPTH = 24
DEFAULT_MAX_CACHED_REQUESTS = 10_000
DEFAULT_MAX_SPEC_FACTOR = 1.0
DEFAULT_MIN_TOKEN_PROB = 0.1
# On real text a token adds ~21 nodes at depth 24 (~2.5 KiB: measured on Spec-Bench prompts),
# so 20,000 tokens hold ~50 MB; depth x tokens nodes is the bound (~70 MB)
DEFAULT_MAX_CACHED_TOKENS = 20_000
STORE_FORMAT = 2  # JSON lines (1: one JSON document, still read)
MAX_PROMPT_TOKENS = 4096  # of a prompt, what the request's own tree is built over


@dataclass(frozen=True, kw_only=True)
class SuffixConfig:
    max_tree_depth: int = DEFAULT_MAX_TREE_DEPTH
    max_cached_requests: int = DEFAULT_MAX_CACHED_REQUESTS
    max_cached_tokens: int = DEFAULT_MAX_CACHED_TOKENS
    max_spec_factor: float = DEFAULT_MAX_SPEC_FACTOR
    min_token_prob: float = DEFAULT_MIN_TOKEN_PROB

    def __post_init__(self) -> None:
        if not 1 <= self.max_tree_depth <= 256:
            raise InvalidOption(f"{{suffix_max_tree_depth}} must be in 1..256, got "
                                f"{self.max_tree_depth}")
        if self.max_cached_requests < 0 or self.max_cached_tokens < 0:
            raise InvalidOption("{suffix_max_cached_requests} and {suffix_max_cached_tokens} "
                                "must be >= 0 (0: no global tree)")
        if not self.max_spec_factor > 0:
            raise InvalidOption(f"{{suffix_max_spec_factor}} must be > 0, got "
                                f"{self.max_spec_factor}")
        if not 0 <= self.min_token_prob <= 1:
            raise InvalidOption(f"{{suffix_min_token_prob}} must be in [0, 1], got "
                                f"{self.min_token_prob}")


@dataclass(frozen=True)
class Proposal:
    tokens: list[int]
    probs: list[float]
    match: int  # length of the context suffix it continues
    score: float


def speculate(tree: SuffixTree, matches: Sequence[int], k: int, config: SuffixConfig,
              *, live: frozenset[int] = frozenset()) -> Proposal:
    """The best proposal from the matched nodes (shortest first). `live` are nodes that end the
    tree's own live sequence: one of their occurrences has no continuation yet."""
    best = Proposal([], [], 0, 0.0)
    for node in reversed(matches):  # longest match first: it wins ties
        m = tree.level(node)
        limit = min(k, int(config.max_spec_factor * m + 1e-6))
        if limit <= best.score:  # every probability is at most 1: it cannot score more
            break
        tokens: list[int] = []
        probs: list[float] = []
        prob, cur = 1.0, node
        while len(tokens) < limit:
            child = tree.best(cur)
            if child == -1:
                break
            seen = tree.count(cur) - (cur in live)
            if seen <= 0:
                break
            prob *= tree.count(child) / seen
            if prob < config.min_token_prob:
                break
            tokens.append(tree.token(child))
            probs.append(prob)
            cur = child
        score = sum(probs)
        if tokens and score > best.score:
            best = Proposal(tokens, probs, m, score)
    return best


class SuffixCache:
    """The global tree over finished outputs, least recently added out first once it holds
    more than `max_cached_tokens` tokens or `max_cached_requests` outputs."""

    def __init__(self, config: SuffixConfig = SuffixConfig()) -> None:
        self.config = config
        self.tree = SuffixTree(config.max_tree_depth)
        self._order: OrderedDict[int, int] = OrderedDict()  # seq id -> its token count
        self._next_id = 0
        self.cached_tokens = 0

    @property
    def enabled(self) -> bool:
        return self.config.max_cached_tokens > 0 and self.config.max_cached_requests > 0

    def add(self, tokens: Sequence[int]) -> None:
        if not self.enabled or not tokens:
            return
        tokens = list(tokens)[-self.config.max_cached_tokens:]
        seq, self._next_id = self._next_id, self._next_id + 1
        self.tree.extend(seq, tokens)
        self._order[seq] = len(tokens)
        self.cached_tokens += len(tokens)
        while (self.cached_tokens > self.config.max_cached_tokens
               or len(self._order) > self.config.max_cached_requests):
            old, n = self._order.popitem(last=False)
            self.tree.remove(old)
            self.cached_tokens -= n

    def sequences(self) -> list[list[int]]:
        """The cached outputs, oldest first."""
        return [list(self.tree._seqs[s]) for s in self._order]

    def stats(self) -> dict:
        return {"requests": len(self._order), "tokens": self.cached_tokens,
                "nodes": self.tree.nodes, "bytes": self.tree.nodes * NODE_BYTES}


class SuffixDrafter(Drafter):
    """Proposals from the request's own tree and the global one (`cache`, shared by the
    generations that may learn from each other: one process, one API key)."""

    name = "suffix"

    def __init__(self, cache: SuffixCache | None = None,
                 config: SuffixConfig | None = None) -> None:
        self.config = config or (cache.config if cache is not None else SuffixConfig())
        self.cache = cache
        self._local = SuffixTree(self.config.max_tree_depth)
        self._global = Matcher(cache.tree) if cache is not None else None
        self._n = 0  # context tokens in the local tree
        self.last: Proposal | None = None

    def begin(self, prompt: Sequence[int]) -> None:
        self._local = SuffixTree(self.config.max_tree_depth)
        self._n = 0
        if self.cache is not None:
            self._global = Matcher(self.cache.tree)
        self._follow(prompt)  # the prompt is read here, booked as setup (core/decode.py)

    def _follow(self, context: Sequence[int]) -> None:
        if len(context) < self._n:  # not an extension (no begin() was called): start over
            self.begin(context)
        new = context[self._n:]
        if not self._n and len(new) > MAX_PROMPT_TOKENS:
            # the request's tree holds the prompt's last MAX_PROMPT_TOKENS only: building it
            # costs O(depth) a token (1.1 s for a 16k-token prompt here); a long copy from
            # further back is the copy lookup's (copy.py), which indexes it all in ~30 ms
            self._local.extend(0, new[-MAX_PROMPT_TOKENS:])
        else:
            self._local.extend(0, new)
        if self._global is not None:
            self._global.feed(new)
        self._n = len(context)

    def propose(self, context: Sequence[int], k: int) -> Draft:
        self._follow(context)
        ends = self._local.ends(0)
        best = speculate(self._local, ends, k, self.config, live=frozenset(ends))
        if self._global is not None:
            other = speculate(self.cache.tree, self._global.nodes, k, self.config)
            if other.score > best.score:
                best = other
        self.last = best
        return Draft(best.tokens, kind=f"suffix {_bucket(best.match)}")

    def end(self, tokens: Sequence[int]) -> None:
        if self.cache is not None:
            self.cache.add(tokens)


def _bucket(match: int) -> str:
    """Acceptance is learned per kind of proposal: matches of similar length behave alike."""
    for top in (1, 2, 3, 5, 8, 13):
        if match <= top:
            return str(top)
    return "long"


# -- across runs: a persisted global tree -------------------------------------------------------
def tokenizer_fingerprint(backend) -> str:
    """What a stored tree's token ids mean: a hash of the vocabulary's size and a sample of
    its token strings (a store written with another tokenizer is refused)."""
    h = hashlib.sha256(str(backend.n_vocab).encode())
    for t in range(0, backend.n_vocab, max(1, backend.n_vocab // 4096)):
        h.update(backend.token_bytes(t) + b"\0")
    return h.hexdigest()[:16]


def _read_store(path: Path, fingerprint: str) -> list[list[int]] | None:
    """The sequences of a store, oldest first; a missing one is empty; a corrupt or truncated
    one is empty with a warning (None: it is rewritten at the next save); another tokenizer's
    is refused. Format 2 is JSON lines: a header, then one sequence a line (a save appends);
    format 1, one JSON document, is read too."""
    try:
        text = path.read_text()
    except FileNotFoundError:
        return []
    except (OSError, UnicodeDecodeError):
        text = ""
    lines = text.splitlines()
    try:
        header = json.loads(lines[0]) if lines else None
    except ValueError:
        header = None
    if isinstance(header, dict) and header.get("format") == 1 and len(lines) == 1:
        rows: object = header.get("sequences")
    elif isinstance(header, dict) and header.get("format") == STORE_FORMAT:
        rows = []
        for line in lines[1:]:
            try:
                rows.append(json.loads(line))  # type: ignore[attr-defined]
            except ValueError:  # an append cut short: that sequence only
                continue
    else:
        problem = "corrupt or truncated" if not isinstance(header, dict) or "format" not in \
            header else "not one specpair wrote"
        print(f"specpair: warning: suffix store {path} is {problem}: starting a new one",
              file=sys.stderr)
        return None
    if not isinstance(rows, list):
        print(f"specpair: warning: suffix store {path} is not one specpair wrote: starting a "
              "new one", file=sys.stderr)
        return None
    if header.get("tokenizer") != fingerprint:
        raise InvalidOption(f"suffix store {path} was written for another tokenizer: give "
                            "another {suffix_store} path (or delete it)")
    return [r for r in rows if isinstance(r, list) and all(isinstance(t, int) and t >= 0
                                                              for t in r)]


def newest_within(sequences: Sequence[Sequence[int]], config: SuffixConfig) -> list[list[int]]:
    """What a SuffixCache fed `sequences` in order would keep (each cut to its last
    max_cached_tokens, the oldest out first beyond the bounds), without building its tree."""
    if not (config.max_cached_tokens > 0 and config.max_cached_requests > 0):
        return []
    kept: list[list[int]] = []
    tokens = 0
    for seq in reversed(sequences):
        if not seq:
            continue
        seq = list(seq)[-config.max_cached_tokens:]
        if tokens + len(seq) > config.max_cached_tokens or \
                len(kept) >= config.max_cached_requests:
            break
        kept.append(seq)
        tokens += len(seq)
    return kept[::-1]


def read_store(path: str | os.PathLike, backend) -> list[list[int]]:
    """The sequences a store file holds, oldest first (a damaged file: none)."""
    return _read_store(Path(path), tokenizer_fingerprint(backend)) or []


def load_store(path: str | os.PathLike, backend, config: SuffixConfig) -> SuffixCache:
    """A global tree built from a store file (see `save_store`): over the sequences the bounds
    keep only, so its work is the tokens it keeps, not every token the file holds."""
    cache = SuffixCache(config)
    for seq in newest_within(read_store(path, backend), config):
        cache.add(seq)
    return cache


def save_store(path: str | os.PathLike, backend, new: Sequence[Sequence[int]],
               config: SuffixConfig) -> None:
    """Add `new` outputs to the store, under a lock. A save appends them, a line each: its work
    is the new tokens (it used to rebuild a tree of the whole store to choose what to keep, at
    the end of every generation). Once the file holds more than COMPACT_FACTOR times what the
    bounds keep, it is rewritten with what they keep, atomically (amortised: a constant per
    token saved). A damaged file or another format is rewritten.

    The store is shared by runs with different bounds: a compaction keeps what the largest
    bounds any run has saved with keep (the header records them), so one run with smaller
    bounds never drops what another's keep. A run whose global tree is off (a bound of 0)
    stores nothing."""
    if not (config.max_cached_tokens > 0 and config.max_cached_requests > 0):
        return
    path = Path(path)
    fingerprint = tokenizer_fingerprint(backend)
    path.parent.mkdir(parents=True, exist_ok=True)
    rows = [list(map(int, seq)) for seq in new if len(seq)]
    with locked(path):
        header = _header(path, fingerprint)
        tokens = max(config.max_cached_tokens, _bound(header, "max_cached_tokens"))
        requests = max(config.max_cached_requests, _bound(header, "max_cached_requests"))
        if header is not None and header.get("whole") and \
                tokens == _bound(header, "max_cached_tokens") and \
                requests == _bound(header, "max_cached_requests") and \
                path.stat().st_size <= COMPACT_FACTOR * _bound_bytes(tokens):
            with open(path, "a") as f:
                f.write("".join(json.dumps(r) + "\n" for r in rows))
            return
        old = _read_store(path, fingerprint) or []
        keep = SuffixConfig(max_cached_tokens=tokens, max_cached_requests=requests)
        kept = newest_within([*old, *rows], keep)
        first = json.dumps({"format": STORE_FORMAT, "tokenizer": fingerprint,
                            "max_cached_tokens": tokens, "max_cached_requests": requests})
        write_atomic(path, first + "\n" + "".join(json.dumps(r) + "\n" for r in kept))


COMPACT_FACTOR = 2
_TOKEN_BYTES = 8  # a token id of up to 6 digits, its comma and space, in a JSON line


def _bound_bytes(max_cached_tokens: int) -> int:
    return max(4096, max_cached_tokens * _TOKEN_BYTES)


def _bound(header: dict | None, name: str) -> int:
    value = (header or {}).get(name)
    return value if isinstance(value, int) and value > 0 else 0


def _header(path: Path, fingerprint: str) -> dict | None:
    """The header of a format-2 store of this tokenizer, with "whole": whether the file ends
    with a whole line (so an append lands on a line of its own); None for a missing, damaged
    or other-format file; refuses another tokenizer's, as reading does."""
    try:
        with open(path, "rb") as f:
            first = f.readline()
            f.seek(0, os.SEEK_END)
            if f.tell() == 0:
                return None
            f.seek(-1, os.SEEK_END)
            whole = f.read(1) == b"\n"
        header = json.loads(first)
    except (OSError, ValueError):
        return None
    if not isinstance(header, dict) or header.get("format") != STORE_FORMAT:
        return None
    if header.get("tokenizer") != fingerprint:
        raise InvalidOption(f"suffix store {path} was written for another tokenizer: give "
                            "another {suffix_store} path (or delete it)")
    return {**header, "whole": whole}
