"""Several sequences in one engine (issue 44, step 1): each sequence is a Backend of its own,
rows of several are evaluated in one call and each gets exactly the logits it would get alone,
and a sequence rewinds, overflows or is copied without disturbing the others. The toy here;
the real 0.5B on llama.cpp below (one context, a unified KV cache)."""

from __future__ import annotations

import numpy as np
import pytest

from specpair.core.backend import EvalPart, MultiSequence, sequence
from specpair.core.decode import DecodeConfig
from specpair.errors import ContextOverflow
from specpair.schedule import decode_steps

from .toy import MultiToy, random_table

PROMPTS = [[1, 2, 3], [4, 5, 6, 7, 8], [9], [10, 11]]


def _decode(backend, prompt, n=12):
    return [t for step in decode_steps(backend, None, prompt, config=DecodeConfig(max_tokens=n),
                                       rng=np.random.default_rng(0)) for t in step.tokens]


def test_a_toy_with_sequences_is_a_multi_sequence_engine_and_each_sequence_a_backend():
    toy = MultiToy(random_table(26, 1), n_seq=4)
    assert isinstance(toy, MultiSequence)
    assert sequence(toy, 0) is not toy  # a view, since there are several
    solo = MultiToy(random_table(26, 1), n_seq=1)
    assert sequence(solo, 0) is solo


def test_rows_of_several_sequences_in_one_call_equal_each_alone():
    toy = MultiToy(random_table(26, 1), n_seq=4)
    got = toy.eval_many([EvalPart(i, p) for i, p in enumerate(PROMPTS)])
    assert toy.batches == [[(0, 3), (1, 5), (2, 1), (3, 2)]]
    for i, p in enumerate(PROMPTS):
        alone = MultiToy(random_table(26, 1), n_seq=1)
        np.testing.assert_array_equal(got[i], alone.eval(p))
        assert list(toy.seq_tokens(i)) == p


def test_decoding_on_each_sequence_equals_its_solo_decode_and_rewinds_stay_apart():
    toy = MultiToy(random_table(26, 1), n_seq=4)
    # interleave: decode each sequence a little at a time through its own view
    views = [sequence(toy, i) for i in range(4)]
    gens = [decode_steps(v, None, p, config=DecodeConfig(max_tokens=12),
                         rng=np.random.default_rng(0)) for v, p in zip(views, PROMPTS)]
    outs: list[list[int]] = [[] for _ in PROMPTS]
    live = set(range(4))
    while live:
        for i in sorted(live):
            try:
                outs[i] += next(gens[i]).tokens
            except StopIteration:
                live.discard(i)
    for i, p in enumerate(PROMPTS):
        assert outs[i] == _decode(MultiToy(random_table(26, 1), n_seq=1), p)
    views[1].rewind(2)
    assert len(toy.seq_tokens(1)) == 2 and len(toy.seq_tokens(0)) > 3


def test_a_sequence_that_overflows_its_context_fails_alone():
    toy = MultiToy(random_table(26, 1), n_seq=2, n_ctx=16)
    toy.eval_many([EvalPart(0, [1] * 10)])
    with pytest.raises(ContextOverflow):
        sequence(toy, 1).eval([2] * 17)
    assert len(toy.seq_tokens(0)) == 10 and len(toy.seq_tokens(1)) == 0


# -- the real 0.5B on llama.cpp: one context, n_seq sequences ---------------------------------


@pytest.fixture(scope="module")
def engine(draft_path):
    from specpair.backends import BackendConfig
    from specpair.backends.llamacpp import LlamaCppBackend

    backend = LlamaCppBackend(draft_path, BackendConfig(n_ctx=256, n_seq=3))
    yield backend
    backend.close()


TEXTS = ["def fibonacci(n):\n    ", "The capital of France is", "1, 2, 3, 4, 5,"]


def _near(a, b, tol=0.05):
    """Logits of one row in a batch of others and alone: equal up to batched kernels' float
    error (greedy choices then agree but at near-ties: see measure/agreement.py)."""
    a, b = np.asarray(a), np.asarray(b)
    return float(np.abs(a - b).max()) < tol * max(1.0, float(np.abs(b).max()))


@pytest.mark.real
def test_real_sequences_in_one_batch_get_their_own_logits(engine):
    prompts = [engine.tokenize(t) for t in TEXTS]
    for seq in range(3):
        engine.rewind_seq(seq, 0)
    together = engine.eval_many([EvalPart(i, p) for i, p in enumerate(prompts)])
    for i, p in enumerate(prompts):
        assert list(engine.seq_tokens(i)) == p
        view = sequence(engine, i)
        view.rewind(0)
        alone = view.eval(p)
        assert together[i].shape == (len(p), engine.n_vocab)
        assert _near(together[i], alone), i
        assert (together[i][-1].argmax() == alone[-1].argmax())
    # the next round: one row each, after each sequence's own prompt
    nxt = engine.eval_many([EvalPart(i, [int(together[i][-1].argmax())], False)
                            for i in range(3)])
    for i, p in enumerate(prompts):
        view = sequence(engine, i)
        view.rewind(len(p))
        assert _near(nxt[i], view.eval([int(together[i][-1].argmax())], all_logits=False))


@pytest.mark.real
def test_real_rewind_and_copy_keep_the_other_sequences(engine):
    p = engine.tokenize(TEXTS[0])
    q = engine.tokenize(TEXTS[1])
    for seq in range(3):
        engine.rewind_seq(seq, 0)
    engine.eval_many([EvalPart(0, p), EvalPart(1, q)])
    engine.rewind_seq(0, 3)  # sequence 0 rewinds; sequence 1's cache is untouched
    after_q = sequence(engine, 1).eval([p[0]])
    engine.rewind_seq(1, len(q))
    engine.rewind_seq(2, 0)
    sequence(engine, 2).eval(q)
    assert _near(after_q, sequence(engine, 2).eval([p[0]]))
    # copying sequence 1's prompt into sequence 2 gives the logits recomputing it gives
    engine.copy_seq(1, 2, len(q) - 1)
    assert list(engine.seq_tokens(2)) == q[:-1]
    copied = sequence(engine, 2).eval([q[-1]])
    engine.rewind_seq(2, 0)
    recomputed = sequence(engine, 2).eval(q)[-1:]
    assert _near(copied, recomputed)


@pytest.mark.real
def test_real_batch_call_three_slots_every_token_is_the_targets_own(draft_path, draft):
    """Three requests decoded in one batch per step: every token of every output is the 0.5B's
    argmax given its own prefix, or a numerical near-tie (the batch's kernels differ)."""
    import specpair
    from specpair.measure.agreement import check_tokens

    prompts = ["def add(a, b):\n    return", "Write one sentence about the sea.",
               "List: apple, banana, cherry, apple, banana,"]
    with specpair.load(draft_path, draft="ngram", parallel=3, n_ctx=256) as pair:
        gens = pair.generate_batch(prompts, max_tokens=24)
        tokens = [pair.prompt_tokens(p) for p in prompts]
    for prompt, gen in zip(tokens, gens):
        assert gen.stats.new_tokens == len(gen.tokens) > 0
        check = check_tokens(draft, prompt, gen.tokens)
        assert check.ok, check.describe()


@pytest.mark.real
def test_real_batch_call_auto_cuts_drafts_for_the_batch_and_every_token_is_the_targets_own(
        draft_path, draft):
    """auto beside other requests: each slot offers its lookups' proposal and the batch keeps
    what its goodput rule says pays; every kept token is still the 0.5B's argmax given its own
    prefix (or a near-tie), and text that repeats gets drafts verified in the shared batch."""
    import specpair
    from specpair.measure.agreement import check_tokens

    prompts = ["List: apple, banana, cherry, apple, banana, cherry, apple, banana,",
               "Write one sentence about the sea.",
               "1, 2, 3, 1, 2, 3, 1, 2, 3, 1, 2, 3, 1,"]
    with specpair.load(draft_path, parallel=3, n_ctx=256, fresh=True) as pair:
        gens = pair.generate_batch(prompts, max_tokens=48)
        tokens = [pair.prompt_tokens(p) for p in prompts]
    for prompt, gen in zip(tokens, gens):
        check = check_tokens(draft, prompt, gen.tokens)
        assert check.ok, check.describe()
    assert sum(g.stats.accepted for g in gens) > 0  # drafts were kept, and paid


@pytest.mark.real
def test_real_a_prefix_copied_from_a_generating_slot_gives_the_targets_own_tokens(engine, draft):
    """llama.cpp: a request whose prompt shares a long prefix with a slot that is generating
    gets that prefix's KV copied (unified cache cells shared), and its greedy output is still
    the target's own, token by token."""
    from specpair.core.stats import DecodeStats
    from specpair.measure.agreement import check_tokens
    from specpair.schedule import Request, Scheduler

    for seq in range(3):
        engine.rewind_seq(seq, 0)
    shared = engine.tokenize("def parse(line):\n    '''Split a CSV line into fields.'''\n" * 3)
    s = Scheduler(engine)
    out: dict[int, list[int]] = {0: [], 1: []}
    stats = DecodeStats()

    def collect(i):
        def on_step(step):
            out[i].extend(step.tokens)
            if i == 1:
                stats.add(step)
        return on_step

    s.submit(Request(prompt=shared + engine.tokenize(" return"), config=DecodeConfig(
        max_tokens=24), rng=np.random.default_rng(0), on_step=collect(0)))
    for _ in range(3):
        s.step()
    second = shared + engine.tokenize(" fields =")
    s.submit(Request(prompt=second, config=DecodeConfig(max_tokens=16),
                     rng=np.random.default_rng(0), on_step=collect(1)))
    s.run()
    assert stats.cached_tokens >= len(shared) - 1  # copied, not recomputed
    check = check_tokens(draft, second, out[1])
    assert check.ok, check.describe()
