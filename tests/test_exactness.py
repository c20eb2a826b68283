"""Exactness defects that once slipped through, each pinned by a test that failed before its fix:
a remapped draft's q that was not a distribution, a stale cache after a one-token prompt, a
double BOS from chat templates, draft ids past the target's vocabulary, stop strings and EOS
in the statistics, and every output token checked against the target."""

from collections import Counter

import numpy as np
import pytest
from scipy.stats import chisquare

from specpair.core.decode import DecodeConfig
from specpair.core.drafter import fit_to_vocab
from specpair.core.prompt import encode_prompt
from specpair.core.sampling import SamplingConfig
from specpair.core.stats import DecodeStats, Step
from specpair.core.verify import verify_sampled
from specpair.drafters import Draft, Drafter, RemappedDrafter
from specpair.generation import stream_pieces
from specpair.measure.agreement import NEAR_TIE_MARGIN, check_tokens
from specpair.schedule import decode_steps

from .toy import ToyBackend, random_table


class FixedQDrafter(Drafter):
    """Samples one token from a fixed q over draft ids and returns q (a model drafter's shape)."""

    name = "fixed-q"

    def __init__(self, q, rng):
        self.q, self.rng = np.asarray(q, dtype=np.float64), rng

    def propose(self, context, k):
        tokens = [int(self.rng.choice(len(self.q), p=self.q)) for _ in range(k)]
        return Draft(tokens, np.tile(self.q, (k, 1)))

    def close(self):
        pass


def test_remapped_draft_keeps_the_target_distribution():
    """Draft id 1 has no target id and holds 0.9 of q: before the fix, outputs came out
    [0.19, 0.81] instead of p = [0.1, 0.9]."""
    rng = np.random.default_rng(0)
    p = np.array([[0.1, 0.9], [0.1, 0.9]])
    # draft ids: 0 -> target 0, 2 -> target 1; draft id 1 has no target id
    inner = FixedQDrafter([0.1, 0.9, 0.0], rng)
    drafter = RemappedDrafter(inner, {0: 0, 2: 1})
    counts = Counter()
    n = 20_000
    for _ in range(n):
        draft = drafter.propose([0], 1)
        if draft.tokens:
            assert draft.q.sum(axis=1) == pytest.approx(1.0)
        token = verify_sampled(p[: len(draft.tokens) + 1], draft.q, draft.tokens, rng)
        first = draft.tokens[0] if token[0] == 1 else token[1]
        counts[first] += 1
    observed = [counts[0], counts[1]]
    assert chisquare(observed, [0.1 * n, 0.9 * n]).pvalue > 1e-3, observed


def test_remapped_draft_with_no_mapped_mass_proposes_nothing():
    drafter = RemappedDrafter(FixedQDrafter([0.0, 1.0], np.random.default_rng(0)), {0: 0})
    assert drafter.propose([0], 3).tokens == []


def test_draft_ids_beyond_the_target_vocabulary_are_cut():
    q = np.full((3, 8), 1 / 8)
    draft = fit_to_vocab(Draft([1, 6, 2], q), 5)  # id 6 does not exist in a 5-token target
    assert draft.tokens == [1]
    assert draft.q.shape == (1, 5) and draft.q.sum() == pytest.approx(1.0)
    assert fit_to_vocab(Draft([7]), 5).tokens == []


class PositionalBackend(ToyBackend):
    """Logits depend on the position in the cache, so a stale cache shows in the output."""

    def eval(self, tokens, *, all_logits=True):
        start = len(self._tokens)
        rows = super().eval(tokens, all_logits=True).copy()
        for i in range(len(tokens)):
            rows[i, (start + i) % self.n_vocab] += 50.0
        return rows if all_logits else rows[-1:]


def test_a_one_token_prompt_is_not_conditioned_on_an_earlier_decode():
    table = random_table(6, seed=3)
    fresh = PositionalBackend(table)
    expected = [t for s in decode_steps(fresh, None, [2], config=DecodeConfig(max_tokens=5),
                                        rng=np.random.default_rng(0)) for t in s.tokens]
    reused = PositionalBackend(table)
    list(decode_steps(reused, None, [0, 1, 2, 3, 4], config=DecodeConfig(max_tokens=5),
                      rng=np.random.default_rng(0)))
    committed, got = [2], []
    for step in decode_steps(reused, None, [2], config=DecodeConfig(max_tokens=5),
                             rng=np.random.default_rng(0)):
        committed += step.tokens
        got += step.tokens
        assert reused.tokens == committed[:-1]  # the cache invariant, after every step
    assert got == expected


class BosBackend(ToyBackend):
    """A model that adds BOS ('z') and whose chat template writes BOS itself, as Gemma 3's and
    Llama 3's do."""

    def tokenize(self, text, *, add_bos=True, special=True):
        return ([25] if add_bos else []) + super().tokenize(text)

    def chat_prompt(self, user_message):
        return "z" + user_message


def test_a_chat_prompt_starts_with_one_bos():
    backend = BosBackend(random_table(26, seed=0))
    assert encode_prompt(backend, "abc", chat=True) == [25, 0, 1, 2]
    assert encode_prompt(backend, "abc", chat=False) == [25, 0, 1, 2]


def _scripted(table_rows):
    """A toy target whose greedy walk from token 0 is 0 -> 1 -> 2 -> 3 -> 4 (EOS)."""
    table = np.full((5, 5), -5.0)
    for a, b in table_rows:
        table[a, b] = 5.0
    return table


class ListDrafter(Drafter):
    name = "list"

    def __init__(self, tokens):
        self.tokens = tokens

    def propose(self, context, k):
        return Draft(self.tokens[:k])

    def close(self):
        pass


def test_an_accepted_draft_eos_leaves_later_positions_unjudged():
    target = ToyBackend(_scripted([(0, 1), (1, 2), (2, 3), (3, 4), (4, 0)]), eos=4)
    stats = DecodeStats()
    for step in decode_steps(target, ListDrafter([1, 2, 3, 4, 0, 0]), [0],
                             config=DecodeConfig(max_tokens=20, draft_tokens=6),
                             rng=np.random.default_rng(0)):
        stats.add(step)
    assert stats.accepted == 4 and stats.drafted == 6 and stats.finish == "eos"
    assert stats.reached_at[:4] == [1, 1, 1, 1] and stats.reached_at[4:] == [0, 0]
    assert stats.mean_acceptance_length == 1 + 4 / 1  # vLLM's and llama.cpp's definition


def test_tokens_after_a_stop_string_are_not_output_or_counted():
    # walk a -> b -> c -> d -> e -> ... ; stop at "cd": text "bcd..." ends before "cd"
    table = np.full((26, 26), -5.0)
    for i in range(25):
        table[i, i + 1] = 5.0
    target = ToyBackend(table)
    stats = DecodeStats()
    tokens, text = [], ""
    for piece in stream_pieces(target, ListDrafter([1, 2, 3, 4, 5, 6]), [0],
                               config=DecodeConfig(max_tokens=20, draft_tokens=6, stop=("cd",)),
                               rng=np.random.default_rng(0), stats=stats):
        tokens += piece.tokens
        text += piece.text
    assert text == "b"
    assert tokens == [1, 2, 3]  # up to the token that completes "cd"; e, f, g dropped
    assert stats.new_tokens == 3 and stats.finish == "stop"


def test_every_token_check_finds_a_token_the_target_would_not_produce():
    table = np.full((5, 5), 0.0)
    for a in range(5):
        table[a, (a + 1) % 5] = 3.0
        table[a, (a + 2) % 5] = 3.0 - NEAR_TIE_MARGIN / 2  # a near-tie runner-up
    target = ToyBackend(table)
    good = check_tokens(target, [0], [1, 2, 3, 4])
    assert good.ok and good.argmax == 4 and good.checked == 4
    tie = check_tokens(target, [0], [1, 3, 4, 0])  # 1 -> 3 is the runner-up: a near-tie
    assert tie.ok and tie.near_tie == 1
    bad = check_tokens(target, [0], [1, 2, 0, 1])  # 2 -> 0: 3 logits below the best
    assert not bad.ok and bad.bad == (2,)


def test_step_judged_defaults_to_the_verifier_rule():
    assert Step(tokens=[1], n_drafted=4, n_accepted=2, draft_seconds=0, target_seconds=0,
                seconds=0).judged == 3


def test_sampled_remap_is_exact_over_several_tokens():
    """Through the decode loop: the first two tokens are distributed as the target's."""
    v = 3
    target_table = np.log(np.array([[0.2, 0.3, 0.5]] * v))
    rng = np.random.default_rng(1)
    sampling = SamplingConfig(temperature=1.0, seed=1)
    counts = Counter()
    n = 6000
    for _ in range(n):
        inner = FixedQDrafter([0.6, 0.1, 0.05, 0.25], rng)  # draft id 3 has no target id
        drafter = RemappedDrafter(inner, {0: 0, 1: 1, 2: 2})
        out = []
        for step in decode_steps(ToyBackend(target_table), drafter, [0],
                                 config=DecodeConfig(max_tokens=2, draft_tokens=2,
                                                     sampling=sampling), rng=rng):
            out += step.tokens
        counts[tuple(out[:2])] += 1
    p = np.array([0.2, 0.3, 0.5])
    keys = [(a, b) for a in range(v) for b in range(v)]
    expected = [p[a] * p[b] * n for a, b in keys]
    assert chisquare([counts[k] for k in keys], expected).pvalue > 1e-3
