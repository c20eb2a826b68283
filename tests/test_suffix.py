"""Suffix decoding: the tree's counts, proposals from the longest match ranked by frequency, the
adaptive length and min_token_prob, a brute-force reference on random streams, eviction, the
decode loop's exactness with its q-free proposals, and the persisted store."""

from __future__ import annotations

import subprocess
import sys
from collections import Counter
from itertools import product

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.stats import chisquare

from specpair.core.decode import DecodeConfig
from specpair.core.sampling import SamplingConfig
from specpair.drafters.suffix import (
    SuffixCache,
    SuffixConfig,
    SuffixDrafter,
    load_store,
    read_store,
    save_store,
    speculate,
)
from specpair.drafters.suffix_tree import Matcher, SuffixTree
from specpair.errors import SpecpairError
from specpair.schedule import decode_steps

from .toy import ToyBackend, random_table

LOOSE = SuffixConfig(max_tree_depth=8, min_token_prob=0.0, max_spec_factor=4.0)


def propose(drafter, context, k=8):
    drafter.begin(context[:1])
    return drafter.propose(context, k).tokens


def test_proposes_what_followed_the_longest_earlier_match():
    d = SuffixDrafter(config=LOOSE)
    # "1 2 3" was followed by 4 5 6; "9 2 3" by 7: the context ends "1 2 3"
    # (depth 8: a match of 3 leaves room for 5 more tokens)
    assert propose(d, [1, 2, 3, 4, 5, 6, 9, 2, 3, 7, 0, 1, 2, 3]) == [4, 5, 6, 9, 2]


def test_ranks_continuations_by_frequency():
    d = SuffixDrafter(config=LOOSE)
    # "5 6" (the longest match) was followed by 9 twice and 8 once: 9, with probability 2/3
    assert propose(d, [1, 5, 6, 9, 2, 5, 6, 9, 3, 5, 6, 8, 4, 5, 6], k=1) == [9]
    assert d.last.probs == [pytest.approx(2 / 3)]


def test_length_adapts_to_the_match_and_stops_below_min_token_prob():
    ctx = [1, 2, 3, 4, 5, 6, 7, 8, 0, 3]  # the context ends in a 1-token match ("3")
    short = SuffixDrafter(config=SuffixConfig(max_tree_depth=8, min_token_prob=0.0,
                                              max_spec_factor=2.0))
    assert len(propose(short, ctx)) == 2  # max_spec = 2 x match length 1
    # after "x": a 50/50 split, then each path continues with certainty
    branchy = [9, 1, 1, 1, 9, 2, 2, 2, 9]
    assert propose(SuffixDrafter(config=SuffixConfig(max_tree_depth=8, min_token_prob=0.6,
                                                     max_spec_factor=4.0)), branchy) == []
    assert propose(SuffixDrafter(config=SuffixConfig(max_tree_depth=8, min_token_prob=0.4,
                                                     max_spec_factor=4.0)), branchy) == [1, 1, 1, 9]


def test_the_global_tree_proposes_from_earlier_outputs_and_forgets_the_oldest():
    cache = SuffixCache(SuffixConfig(max_tree_depth=8, max_cached_tokens=12,
                                     min_token_prob=0.0, max_spec_factor=4.0))
    cache.add([10, 11, 12, 13, 14, 15])
    d = SuffixDrafter(cache)
    assert propose(d, [99, 10, 11], k=3) == [12, 13, 14]
    cache.add([20, 21, 22, 23, 24, 25])
    cache.add([30, 31, 32])  # over 12 tokens: the first output goes
    assert cache.stats()["tokens"] <= 12 and cache.stats()["requests"] == 2
    assert propose(SuffixDrafter(cache), [99, 10, 11], k=3) == []
    assert propose(SuffixDrafter(cache), [99, 21, 22], k=2) == [23, 24]


def brute_force(sequences, live, context, k, config):
    """The definition, computed from scratch: for every suffix of the context that occurs
    (length <= depth), follow the most frequent continuation (ties: smaller token), each step's
    probability the product of count ratios, over occurrences that have a continuation."""
    depth = config.max_tree_depth

    def count(s):
        n = 0
        for seq in sequences:
            for i in range(len(seq) - len(s) + 1):
                if len(s) <= depth and seq[i:i + len(s)] == s:
                    n += 1
        return n

    def ends_live(s):
        return live is not None and live[len(live) - len(s):] == s

    best = ([], 0.0, 0)
    for m in range(1, min(depth, len(context)) + 1):
        s = list(context[-m:])
        if not count(s):
            continue
        limit = min(k, int(config.max_spec_factor * m + 1e-6))
        tokens, probs, prob = [], [], 1.0
        while len(tokens) < limit and len(s) < depth:
            seen = count(s) - ends_live(s)
            options = Counter()
            for t in {t for seq in sequences for t in seq}:
                c = count(s + [t])
                if c:
                    options[t] = c
            if not options or seen <= 0:
                break
            t = min(options, key=lambda t: (-options[t], t))
            prob *= options[t] / seen
            if prob < config.min_token_prob:
                break
            tokens.append(t)
            probs.append(prob)
            s = s + [t]
        score = sum(probs)
        if tokens and score >= best[1]:
            best = (tokens, score, m)
    return best


@settings(max_examples=60, deadline=None)
@given(st.lists(st.lists(st.integers(0, 3), min_size=1, max_size=12), min_size=1, max_size=3),
       st.lists(st.integers(0, 3), min_size=1, max_size=6), st.integers(1, 6),
       st.sampled_from([0.0, 0.2, 0.5]), st.sampled_from([1.0, 2.0]))
def test_global_proposals_match_a_brute_force_reference(seqs, context, k, min_prob, factor):
    config = SuffixConfig(max_tree_depth=5, min_token_prob=min_prob, max_spec_factor=factor)
    tree = SuffixTree(config.max_tree_depth)
    for i, s in enumerate(seqs):
        tree.extend(i, s)
    matcher = Matcher(tree)
    matcher.feed(context)
    got = speculate(tree, matcher.nodes, k, config)
    tokens, score, _ = brute_force(seqs, None, context, k, config)
    assert got.tokens == tokens
    assert got.score == pytest.approx(score)


@settings(max_examples=40, deadline=None)
@given(st.lists(st.integers(0, 3), min_size=2, max_size=16), st.integers(1, 6))
def test_request_proposals_match_a_brute_force_reference(context, k):
    config = SuffixConfig(max_tree_depth=5, min_token_prob=0.1, max_spec_factor=2.0)
    d = SuffixDrafter(config=config)
    got = propose(d, context, k)
    tokens, _, _ = brute_force([context], context, context, k, config)
    assert got == tokens


@settings(max_examples=30, deadline=None)
@given(st.lists(st.lists(st.integers(0, 4), min_size=1, max_size=10), min_size=2, max_size=5),
       st.data())
def test_removing_a_sequence_leaves_the_tree_it_would_have_been(seqs, data):
    """Eviction: the tree after removing one sequence answers as a tree built without it."""
    gone = data.draw(st.integers(0, len(seqs) - 1))
    tree = SuffixTree(4)
    for i, s in enumerate(seqs):
        tree.extend(i, s)
    tree.remove(gone)
    fresh = SuffixTree(4)
    for i, s in enumerate(seqs):
        if i != gone:
            fresh.extend(i, s)
    assert tree.nodes == fresh.nodes
    for ctx in product(range(5), repeat=2):
        a, b = Matcher(tree), Matcher(fresh)
        a.feed(ctx)
        b.feed(ctx)
        pa = speculate(tree, a.nodes, 4, LOOSE)
        pb = speculate(fresh, b.nodes, 4, LOOSE)
        assert (pa.tokens, pa.score) == (pb.tokens, pytest.approx(pb.score))


def test_greedy_output_is_the_targets_and_lookups_pay_on_repetitive_text():
    table = random_table(8, seed=3, sharpness=4.0)
    prompt = [1, 2, 3, 4, 5, 6, 7, 1, 2, 3]

    def run(drafter):
        target = ToyBackend(table)
        steps = list(decode_steps(target, drafter, prompt, rng=np.random.default_rng(0),
                                  config=DecodeConfig(max_tokens=40, draft_tokens=8)))
        return [t for s in steps for t in s.tokens], len(target.evals)

    plain, plain_evals = run(None)
    spec, spec_evals = run(SuffixDrafter(SuffixCache()))
    assert spec == plain and spec_evals < plain_evals


def test_sampled_decoding_with_q_free_suffix_proposals_keeps_the_distribution():
    """Proposals without q are verified by the target's own sample: the first three tokens'
    joint distribution is the target's (chi-square, 3,000 seeded runs, level 0.001)."""
    v = 4
    table = random_table(v, seed=5, sharpness=1.0)
    sampling = SamplingConfig(temperature=1.0)
    cache = SuffixCache(SuffixConfig(min_token_prob=0.0))
    cache.add([0, 1, 2, 3, 0, 1, 2, 3, 0, 1])  # a global tree that proposes confidently
    counts: Counter = Counter()
    drafted = 0
    n = 3000
    for i in range(n):
        steps = decode_steps(ToyBackend(table), SuffixDrafter(cache), [0, 1], rng=np.random.
                             default_rng(i), config=DecodeConfig(max_tokens=3, draft_tokens=3,
                                                                 sampling=sampling))
        out = []
        for step in steps:
            out += step.tokens
            drafted += step.n_drafted
        counts[tuple(out[:3])] += 1
    p = np.exp(table) / np.exp(table).sum(axis=1, keepdims=True)
    keys = list(product(range(v), repeat=3))
    expected = [p[1, a] * p[a, b] * p[b, c] * n for a, b, c in keys]
    assert drafted > 0
    assert chisquare([counts[k] for k in keys], expected).pvalue > 1e-3


def test_the_same_seed_gives_the_same_sample_whatever_was_drafted():
    """q-free proposals change speed, never the sample: plain, n-gram and suffix decoding with
    one seed produce the same tokens."""
    from specpair.drafters import NgramDrafter

    table = random_table(6, seed=9, sharpness=1.5)
    sampling = SamplingConfig(temperature=0.9, top_p=0.95)
    outs = []
    for drafter in (None, NgramDrafter(n_min=1), SuffixDrafter(config=SuffixConfig(
            min_token_prob=0.0))):
        steps = decode_steps(ToyBackend(table), drafter, [1, 2, 1, 2, 1], rng=np.random.
                             default_rng(42), config=DecodeConfig(max_tokens=30, draft_tokens=4,
                                                                  sampling=sampling))
        outs.append([t for s in steps for t in s.tokens])
    assert outs[0] == outs[1] == outs[2]


# -- the persisted store ------------------------------------------------------------------------
class Vocab:
    def __init__(self, n: int, salt: str = "") -> None:
        self.n_vocab = n
        self.salt = salt

    def token_bytes(self, t: int) -> bytes:
        return f"{self.salt}{t}".encode()


def test_store_round_trip_truncation_and_another_tokenizer(tmp_path, capsys):
    path = tmp_path / "suffix.json"
    config = SuffixConfig(max_tree_depth=8, min_token_prob=0.0)
    save_store(path, Vocab(50), [[1, 2, 3, 4, 5]], config)
    cache = load_store(path, Vocab(50), config)
    assert propose(SuffixDrafter(cache), [9, 1, 2], k=3) == [3, 4]
    path.write_text(path.read_text()[:15])  # truncated mid-write by something else
    cache = load_store(path, Vocab(50), config)
    assert cache.stats()["tokens"] == 0 and "corrupt or truncated" in capsys.readouterr().err
    save_store(path, Vocab(50), [[7, 8, 9]], config)  # rebuilt
    assert read_store(path, Vocab(50)) == [[7, 8, 9]]
    with pytest.raises(SpecpairError, match="another tokenizer"):
        load_store(path, Vocab(50, salt="x"), config)


def test_two_writers_lose_nothing(tmp_path):
    path = tmp_path / "suffix.json"
    script = (
        "import sys\n"
        "from specpair.drafters.suffix import SuffixConfig, save_store\n"
        "class V:\n"
        "    n_vocab = 50\n"
        "    def token_bytes(self, t): return str(t).encode()\n"
        f"for i in range(20): save_store({str(path)!r}, V(), [[int(sys.argv[1]), i]], "
        "SuffixConfig())\n")
    procs = [subprocess.Popen([sys.executable, "-c", script, str(w)]) for w in (1, 2)]
    assert all(p.wait(timeout=120) == 0 for p in procs)
    sequences = read_store(path, Vocab(50))
    assert sorted(map(tuple, sequences)) == sorted((w, i) for w in (1, 2) for i in range(20))


def test_saving_and_loading_the_store_works_in_proportion_to_what_changed(tmp_path, monkeypatch):
    """A save used to rebuild a tree over the whole store (and a load over every stored token,
    kept or not): an agent calling `generate --suffix-store` paid both each call."""
    from specpair.drafters import suffix_tree

    touched = []
    append = suffix_tree.SuffixTree.append
    monkeypatch.setattr(suffix_tree.SuffixTree, "append",
                        lambda self, seq, token: touched.append(token) or append(self, seq, token))
    path = tmp_path / "suffix.json"
    config = SuffixConfig(max_cached_tokens=1000)
    for i in range(30):
        save_store(path, Vocab(50), [[i % 50] * 100], config)
    assert touched == []  # saving builds no tree
    sizes = []
    for _ in range(3):  # a save appends its tokens: the file grows by them, not by the store
        before = path.stat().st_size
        save_store(path, Vocab(50), [[1, 2, 3]], config)
        sizes.append(path.stat().st_size - before)
    assert all(0 < s < 40 for s in sizes), sizes
    # the file is compacted to the bounds now and then, never past twice them
    assert path.stat().st_size <= 2 * 8 * 1000 + 200
    cache = load_store(path, Vocab(50), config)
    assert len(touched) == cache.cached_tokens <= 1000  # the tree holds what the bounds keep
    assert read_store(path, Vocab(50))[-1] == [1, 2, 3]


def test_a_run_with_smaller_bounds_never_wipes_what_others_keep(tmp_path):
    """`--suffix-max-cached-tokens 0` ("no global tree") once rewrote a store past its
    compaction size empty (300 stored outputs became 0)."""
    path = tmp_path / "suffix.json"
    big = SuffixConfig(max_cached_tokens=2000)
    for i in range(300):
        save_store(path, Vocab(50), [[i % 50, 1, 2, 3, 4, 5]], big)
    before = read_store(path, Vocab(50))
    assert len(before) == 300  # all 300 (1800 tokens) are within the bounds
    save_store(path, Vocab(50), [[9, 9, 9]], SuffixConfig(max_cached_tokens=0))
    assert read_store(path, Vocab(50)) == before  # a run with no global tree stores nothing
    small = SuffixConfig(max_cached_tokens=12)
    for _ in range(3):  # past the small bound's compaction size many times over
        save_store(path, Vocab(50), [[7, 7, 7]], small)
    after = read_store(path, Vocab(50))
    assert after[:len(before)] == before and after[-1] == [7, 7, 7]
    assert load_store(path, Vocab(50), big).cached_tokens >= 1800


def test_an_unwritable_store_is_refused_before_decoding_and_a_failed_save_keeps_the_result(
        tmp_path, capsys):
    import specpair

    from .toy import ToyBackend, walk_table

    blocker = tmp_path / "a-file"
    blocker.write_text("x")
    with pytest.raises(SpecpairError, match="suffix_store cannot be written"):
        specpair.load(ToyBackend(walk_table()), draft="suffix",
                      suffix_store=str(blocker / "store.json"))
    # the folder goes away while the pair decodes: the generation is kept, the save warns
    folder = tmp_path / "gone"
    folder.mkdir()
    pair = specpair.load(ToyBackend(walk_table()), draft="suffix",
                         suffix_store=str(folder / "store.json"))
    folder.rmdir()
    folder.write_text("now a file")
    gen = pair.generate("abcdefgh", max_tokens=8)
    assert gen.text == "ijklmnop"
    assert any("suffix store" in n and "not saved" in n for n in gen.notes)
    assert "not saved" in capsys.readouterr().err


def test_per_key_suffix_trees_are_bounded_in_total_least_recently_used_out_first():
    """A server kept one tree per API key for its whole life (~50 MB each, keys without end)."""
    import specpair
    from specpair.suffix_trees import KEY_TREES

    from .toy import ToyBackend, walk_table

    config = SuffixConfig(max_cached_tokens=100)
    pair = specpair.load(ToyBackend(walk_table()), draft="suffix", suffix=config)
    for key in range(3 * KEY_TREES):
        pair.generate("abcdefgh" * 5, max_tokens=60, partition=f"key{key}")
    trees = pair.suffix_caches()
    assert sum(c.cached_tokens for c in trees.values()) <= KEY_TREES * 100 + 100
    assert len(trees) < 3 * KEY_TREES and f"key{3 * KEY_TREES - 1}" in trees
    assert "key0" not in trees  # the oldest went first
