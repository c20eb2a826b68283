"""A pair's global suffix trees: one per partition (an API key's digest, or "" for everyone's),
the shared one loaded from and saved to the pair's `--suffix-store` file.

Each tree is bounded (`SuffixConfig`), and so is their number: a server sees keys without end,
so all the trees together hold at most KEY_TREES x one tree's token bound, the least recently
used partition's tree dropped first (never the one asked for).
"""

from __future__ import annotations

import sys
from collections import OrderedDict
from collections.abc import Callable, Sequence
from pathlib import Path

from .core.backend import Backend
from .core.files import writable
from .drafters.suffix import SuffixCache, SuffixConfig, load_store, save_store
from .errors import InvalidOption

# all partitions' trees together hold at most this many times one tree's token bound (~50 MB
# each at the defaults), and at most 64 times as many trees (empty ones cost little)
KEY_TREES = 4


class SuffixTrees:
    def __init__(self, config: SuffixConfig, store: str | None,
                 target: Callable[[], Backend]) -> None:
        if store:
            why = writable(Path(store))
            if why is not None:  # checked before any decoding: the save comes after it
                raise InvalidOption(f"{{suffix_store}} cannot be written ({why}): give a "
                                    "path in a folder you can write")
        self.config, self.store, self._target = config, store, target
        self._trees: OrderedDict[str, SuffixCache] = OrderedDict()  # least recently used first

    def tree(self, partition: str = "") -> SuffixCache:
        """The global suffix tree of one partition."""
        if partition not in self._trees:
            self._trees[partition] = (load_store(self.store, self._target(), self.config)
                                      if self.store and not partition else
                                      SuffixCache(self.config))
        self._trees.move_to_end(partition)
        budget = KEY_TREES * max(1, self.config.max_cached_tokens)
        while len(self._trees) > 1 and (
                sum(c.cached_tokens for c in self._trees.values()) > budget
                or len(self._trees) > KEY_TREES * 64):
            self._trees.popitem(last=False)
        return self._trees[partition]

    def forget(self, partition: str) -> None:
        self._trees.pop(partition, None)

    def all(self) -> dict[str, SuffixCache]:
        return dict(self._trees)

    def save(self, tokens: Sequence[int]) -> str | None:
        """Add an output to the store file; a note (and a warning) when the save failed: the
        generation stands, only the store missed it."""
        if not (self.store and tokens):
            return None
        try:
            save_store(self.store, self._target(), [tokens], self.config)
        except OSError as e:
            note = f"warning: the suffix store {self.store} was not saved ({e.strerror})"
            print(f"specpair: {note}", file=sys.stderr)
            return note
        return None


__all__ = ["KEY_TREES", "SuffixTrees"]
