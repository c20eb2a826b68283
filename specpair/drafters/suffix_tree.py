"""A suffix tree of bounded depth over token sequences, with counts: the data structure of
SuffixDecoding (Oliaro et al., NeurIPS 2025; arXiv 2411.04975).

Why written here: the reference implementation (arctic-inference's `SuffixDecodingCache`, which
vLLM imports for `method: "suffix"`) ships only as a source distribution whose build pulls its
own torch >= 2.10 into the build environment (a CUDA build of several GB) and compiles C++ with
CMake and nanobind; it does not install cleanly on a CPU machine with the torch we pin.

What it holds: every substring of at most `depth` tokens of the sequences added, each with the
number of places it occurs (`count`). A node is such a substring; its children are the
substrings one token longer. For each sequence being extended, the nodes of its suffixes (one
per length up to `depth`) are kept, so appending a token visits at most `depth` nodes (O(depth)
per token); matching a growing context works the same way (`Matcher`), so a lookup costs the
length of the match. Each node knows its most frequent child (ties: the smaller token id),
which is what a proposal follows.

Memory: at most `depth` nodes per token held (shared prefixes share nodes), about
NODE_BYTES each; `SuffixCache` bounds the tokens, hence the memory.
"""

from __future__ import annotations

from array import array
from collections.abc import Iterable, Sequence

ROOT = 0
_STRIDE = 1 << 21  # child key = node * _STRIDE + token (vocabularies under 2 million tokens)
# Measured with tracemalloc on 16,509 tokens of Spec-Bench prompts: 124 bytes a node at depth 24
# (20.9 nodes a token), 142 at depth 64 (52.5 a token): a child's dict entry, its key and value
# ints, and six array slots.
NODE_BYTES = 130


class SuffixTree:
    def __init__(self, depth: int) -> None:
        if depth < 1:
            raise ValueError("depth must be >= 1")
        self.depth = depth
        self._child: dict[int, int] = {}
        self._count = array("q", [0])
        self._token = array("i", [-1])
        self._level = array("i", [0])
        self._best = array("i", [-1])  # most frequent child, -1: none
        self._first = array("i", [-1])  # children as a linked list (for eviction)
        self._next = array("i", [-1])
        self._free: list[int] = []
        self._seqs: dict[int, list[int]] = {}
        self._ends: dict[int, list[int]] = {}  # per sequence: nodes of its suffixes
        self.version = 0  # bumped on every change: matchers recompute

    # -- reading --------------------------------------------------------------------------
    @property
    def nodes(self) -> int:
        return len(self._child)

    @property
    def tokens(self) -> int:
        return sum(len(s) for s in self._seqs.values())

    def child(self, node: int, token: int) -> int:
        return self._child.get(node * _STRIDE + token, -1)

    def count(self, node: int) -> int:
        return self._count[node]

    def level(self, node: int) -> int:
        return self._level[node]

    def best(self, node: int) -> int:
        return self._best[node]

    def token(self, node: int) -> int:
        return self._token[node]

    def ends(self, seq: int) -> list[int]:
        """The nodes of the suffixes of sequence `seq` (shortest first)."""
        return self._ends.get(seq, [])

    def children(self, node: int) -> Iterable[int]:
        c = self._first[node]
        while c != -1:
            yield c
            c = self._next[c]

    # -- writing --------------------------------------------------------------------------
    def _new_node(self, parent: int, token: int) -> int:
        if self._free:
            n = self._free.pop()
            self._count[n], self._token[n], self._level[n] = 0, token, self._level[parent] + 1
            self._best[n], self._first[n] = -1, -1
        else:
            n = len(self._count)
            self._count.append(0)
            self._token.append(token)
            self._level.append(self._level[parent] + 1)
            self._best.append(-1)
            self._first.append(-1)
            self._next.append(-1)
        self._next[n] = self._first[parent]
        self._first[parent] = n
        self._child[parent * _STRIDE + token] = n
        return n

    def _better(self, a: int, b: int) -> bool:
        """Whether child a ranks above child b: more frequent, then the smaller token."""
        if b == -1:
            return True
        ca, cb = self._count[a], self._count[b]
        return ca > cb or (ca == cb and self._token[a] < self._token[b])

    def append(self, seq: int, token: int) -> None:
        """Add `token` to the end of sequence `seq` (created on first use)."""
        self.version += 1
        self._seqs.setdefault(seq, []).append(token)
        new: list[int] = []
        for node in (ROOT, *self._ends.get(seq, ())):
            if self._level[node] >= self.depth:
                continue
            c = self._child.get(node * _STRIDE + token, -1)
            if c == -1:
                c = self._new_node(node, token)
            self._count[c] += 1
            if self._best[node] != c and self._better(c, self._best[node]):
                self._best[node] = c
            new.append(c)
        self._count[ROOT] += 1
        self._ends[seq] = new

    def extend(self, seq: int, tokens: Iterable[int]) -> None:
        for t in tokens:
            self.append(seq, t)

    def remove(self, seq: int) -> None:
        """Take sequence `seq` out: every count it added comes off; nodes left with none go."""
        tokens = self._seqs.pop(seq, None)
        self._ends.pop(seq, None)
        if tokens is None:
            return
        self.version += 1
        ends: list[int] = []
        emptied: list[tuple[int, int]] = []  # (parent, child)
        touched: set[int] = set()
        for token in tokens:
            new = []
            for node in (ROOT, *ends):
                if self._level[node] >= self.depth:
                    continue
                c = self._child[node * _STRIDE + token]
                self._count[c] -= 1
                if self._best[node] == c:
                    touched.add(node)
                if self._count[c] == 0:
                    emptied.append((node, c))
                new.append(c)
            self._count[ROOT] -= 1
            ends = new
        for parent, c in sorted(emptied, key=lambda pc: -self._level[pc[1]]):
            self._unlink(parent, c)
            touched.add(parent)
        freed = {c for _, c in emptied}
        for node in touched:
            if node in freed:
                continue
            best = -1
            for c in self.children(node):
                if self._better(c, best):
                    best = c
            self._best[node] = best

    def _unlink(self, parent: int, c: int) -> None:
        del self._child[parent * _STRIDE + self._token[c]]
        prev, cur = -1, self._first[parent]
        while cur != c:
            prev, cur = cur, self._next[cur]
        if prev == -1:
            self._first[parent] = self._next[c]
        else:
            self._next[prev] = self._next[c]
        self._free.append(c)


class Matcher:
    """The nodes of a tree matching the suffixes of a growing context (the context itself is
    not in the tree): `feed` new tokens as they come, O(depth) each; after a change to the
    tree the last `depth` tokens are matched again."""

    def __init__(self, tree: SuffixTree) -> None:
        self.tree = tree
        self.nodes: list[int] = []  # shortest first
        self._tail: list[int] = []
        self._version = tree.version

    def feed(self, tokens: Sequence[int]) -> list[int]:
        tree = self.tree
        self._tail = (self._tail + list(tokens))[-tree.depth:]
        if tree.version != self._version or len(tokens) > tree.depth:
            # the matched nodes depend on the last `depth` tokens only: a long prompt is
            # matched over its tail, not token by token from its start
            self._version = tree.version
            self.nodes = []
            tokens = self._tail
        for t in tokens:
            new = []
            for node in (ROOT, *self.nodes):
                if tree.level(node) >= tree.depth:
                    continue
                c = tree.child(node, t)
                if c != -1:
                    new.append(c)
            self.nodes = new
        return self.nodes
