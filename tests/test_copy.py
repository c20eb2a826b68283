"""The long-copy lookup (drafters/copy.py): full-length copies, cut where copies part."""

from __future__ import annotations

import numpy as np

from specpair.drafters.copy import CopyDrafter


def random_text(n: int, seed: int = 0, vocab: int = 1000) -> list[int]:
    return [int(t) for t in np.random.default_rng(seed).integers(0, vocab, size=n)]


def test_a_long_repeat_is_proposed_at_the_full_k_asked():
    source = random_text(300)
    context = source + random_text(10, seed=1) + source[:40]
    drafter = CopyDrafter()
    drafter.begin(context)
    draft = drafter.propose(context, 64)
    assert draft.tokens == source[40:104]  # 64 tokens, the source's own continuation
    assert draft.kind == "copy 32-63"  # the 40-token match
    # past the suffix tree's depth (24), up to twice the match: a copy earns its K
    assert drafter.propose(context, 500).tokens == context[40:120]
    short = source + random_text(10, seed=1) + source[:14]
    drafter.begin(short)
    assert drafter.propose(short, 64).tokens == source[14:42]


def test_short_or_absent_repeats_propose_nothing():
    text = random_text(400, seed=2)
    drafter = CopyDrafter()
    drafter.begin(text)
    assert drafter.propose(text, 64).tokens == []  # random text: no 12-token window recurs
    repeated = text + text[:11]  # 11 tokens of a copy: below the window
    assert drafter.propose(repeated, 64).tokens == []


def test_a_copy_stops_where_its_source_and_the_output_part():
    """A rename: the output copies the source but writes NEW wherever the source has OLD.
    After the first occurrence parted, copies stop right before the next OLD."""
    OLD, NEW = 5000, 5001  # noqa: N806
    body = random_text(400, seed=3)
    for at in (100, 200, 300):
        body[at] = OLD
    drafter = CopyDrafter()
    context = body + [7777] + body[:60]
    drafter.begin(context)
    first = drafter.propose(context, 64)
    assert first.tokens == body[60:124]  # nothing learned yet: the whole copy, OLD included
    # the target wrote the copy up to 100, then NEW where the source had OLD
    context = context + body[60:100] + [NEW] + body[101:160]
    second = drafter.propose(context, 80)
    assert second.tokens == body[160:200]  # stops right before the next OLD, at 200
    # where the output then keeps OLD (the copy would have gone on), copies through OLD are
    # trusted again
    context = context + body[160:200] + [OLD] + body[201:260]
    assert drafter.propose(context, 80).tokens == body[260:340]


def test_a_rounds_work_grows_with_the_new_tokens_not_with_the_context():
    text = random_text(20_000, seed=4)
    drafter = CopyDrafter()
    drafter.begin(text)
    drafter.propose(text, 64)
    work = []
    for i in range(5):
        text = text + random_text(5, seed=10 + i)
        before = drafter.work
        drafter.propose(text, 64)
        work.append(drafter.work - before)
    assert max(work) <= 5 + 64  # the new windows and at most one match's comparisons


def test_auto_drafts_a_long_copy_at_long_k_where_the_curve_pays():
    """A file returned with one change, on a 2-core EPYC's curve (a batch of 65 costs ~35
    steps): auto takes the copy's proposals at K = 64 once their acceptance is known, and is
    exact."""
    from specpair.auto.adaptive import AdaptiveDrafter, Candidate
    from specpair.auto.curve import CostCurve
    from specpair.drafters import NgramDrafter

    from .test_auto import EPYC, decode
    from .toy import FakeClock, ScriptBackend

    body = random_text(900, seed=5, vocab=49)
    body[450] = 48  # the one change
    script = random_text(900, seed=5, vocab=49) + [47] + body
    clock = FakeClock()
    candidates = [Candidate.with_prior(CopyDrafter(), free=True, prior=[], max_k=64),
                  Candidate.with_prior(NgramDrafter(), free=True, prior=[], max_k=64)]
    drafter = AdaptiveDrafter(candidates, CostCurve([EPYC(n) for n in range(1, 66)]), max_k=64)
    target = ScriptBackend(script, vocab=50, clock=clock, cost=EPYC)
    out, stats = decode(target, drafter, script[:901], 880, clock, k=64)
    assert out == script[901:901 + 880]
    long = [k for name, k in drafter.chosen if name == "copy" and k >= 48]
    assert len(long) >= 8, drafter.rounds_by_choice()
    plain_clock = FakeClock()
    _, plain = decode(ScriptBackend(script, vocab=50, clock=plain_clock, cost=EPYC), None,
                      script[:901], 880, plain_clock)
    assert stats.decode_seconds < plain.decode_seconds / 1.5


def test_reading_a_long_prompt_is_bounded_and_booked_as_setup_not_as_a_rounds_drafting():
    """The lookups read the prompt when the generation begins: the first round no longer pays
    for building the suffix tree over a 16k-token prompt (1.1 s here), and that work is setup
    in the statistics. The request's suffix tree holds the prompt's last 4096 tokens."""
    from specpair.core.decode import DecodeConfig
    from specpair.core.drafter import Draft, Drafter
    from specpair.core.stats import DecodeStats
    from specpair.drafters.suffix import MAX_PROMPT_TOKENS, SuffixDrafter
    from specpair.schedule import decode_steps

    from .toy import FakeClock, ScriptBackend

    clock = FakeClock()

    class Reader(Drafter):
        name = "reader"

        def begin(self, prompt):
            clock.now += 1.0  # reading the prompt takes a simulated second

        def propose(self, context, k):
            return Draft([])

    script = random_text(300, seed=6, vocab=49)
    stats = DecodeStats()
    steps = list(decode_steps(ScriptBackend(script, vocab=50, clock=clock, cost=lambda n: 0.1),
                              Reader(), script[:100], config=DecodeConfig(max_tokens=5),
                              rng=np.random.default_rng(0), clock=clock))
    for step in steps:
        stats.add(step)
    assert stats.setup_seconds == 1.0 and steps[0].draft_seconds == 0.0
    suffix = SuffixDrafter()
    suffix.begin(random_text(16_000, seed=7))
    assert suffix._local.tokens == MAX_PROMPT_TOKENS
