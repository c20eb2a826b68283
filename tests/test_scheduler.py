"""The scheduler (issue 44, step 2): several requests in one batch per step, each with exactly
the output it has alone; requests join and leave between steps; one request's end, error or
overflow is its own; prompts are prefilled in chunks within a token budget; a slot's cached
prefix serves only its own domain."""

from __future__ import annotations

import numpy as np
import pytest

from specpair.core.decode import DecodeConfig
from specpair.core.sampling import SamplingConfig
from specpair.drafters import NgramDrafter
from specpair.errors import ContextOverflow
from specpair.schedule import MIN_PREFILL_ROWS, Request, Scheduler, decode_steps, prefill_plan

from .toy import MultiToy, random_table

PROMPTS = [[1, 2, 3], [4, 5, 6, 7, 8], [9], [10, 11, 12, 10, 11]]


def _solo(prompt, config, seed=0, drafter=None, table=1):
    toy = MultiToy(random_table(26, table), n_seq=1, n_ctx=400)
    return [t for s in decode_steps(toy, drafter, prompt, config=config,
                                    rng=np.random.default_rng(seed)) for t in s.tokens]


def _request(prompt, config, out, seed=0, **kw):
    tokens = out.setdefault(len(out), [])
    return Request(prompt=prompt, config=config, rng=np.random.default_rng(seed),
                   on_step=lambda step: tokens.extend(step.tokens), **kw)


@pytest.mark.parametrize("sampled", [False, True])
def test_four_requests_at_once_each_equal_their_solo_decode(sampled):
    config = DecodeConfig(max_tokens=10, sampling=SamplingConfig(
        temperature=0.9 if sampled else 0.0))
    toy = MultiToy(random_table(26, 1), n_seq=4)
    s = Scheduler(toy)
    out: dict[int, list[int]] = {}
    handles = [s.submit(_request(p, config, out, seed=i)) for i, p in enumerate(PROMPTS)]
    s.run()
    assert all(h.done and h.error is None for h in handles)
    for i, p in enumerate(PROMPTS):
        assert out[i] == _solo(p, config, seed=i), i
    # every step evaluated all four slots' rows in one call
    assert max(len(b) for b in toy.batches) == 4


def test_lookup_drafts_per_slot_are_verified_in_the_shared_batch():
    config = DecodeConfig(max_tokens=16, draft_tokens=4)
    prompts = [[1, 2, 3, 4, 1, 2, 3, 4, 1, 2], [5, 6, 7, 5, 6, 7, 5, 6]]
    toy = MultiToy(random_table(26, 2), n_seq=2)
    s = Scheduler(toy)
    out: dict[int, list[int]] = {}
    for p in prompts:
        s.submit(_request(p, config, out, drafter=NgramDrafter()))
    s.run()
    for i, p in enumerate(prompts):
        assert out[i] == _solo(p, config, table=2), i  # a draft changes speed, never output


def test_requests_join_and_leave_between_steps_and_a_cancelled_one_disturbs_nobody():
    config = DecodeConfig(max_tokens=12)
    toy = MultiToy(random_table(26, 1), n_seq=2)
    s = Scheduler(toy)
    out: dict[int, list[int]] = {}
    a = s.submit(_request(PROMPTS[0], config, out))
    b = s.submit(_request(PROMPTS[1], config, out))
    c = s.submit(_request(PROMPTS[3], config, out))  # waits: two slots
    s.step()
    s.step()
    assert c.slot is None and s.busy_slots == 2
    b.cancel()
    s.step()  # b's slot is freed and c joins
    assert b.done and c.slot == 1
    s.run()
    assert a.done and c.done
    assert out[0] == _solo(PROMPTS[0], config) and out[2] == _solo(PROMPTS[3], config)
    assert 0 < len(out[1]) < 12


def test_a_prompt_too_long_and_a_full_context_are_their_own_requests_end():
    toy = MultiToy(random_table(26, 1), n_seq=3, n_ctx=20)
    s = Scheduler(toy)
    out: dict[int, list[int]] = {}
    long = s.submit(_request([1] * 25, DecodeConfig(max_tokens=4), out))
    fills = s.submit(_request([2] * 15, DecodeConfig(max_tokens=50), out))
    fine = s.submit(_request(PROMPTS[0], DecodeConfig(max_tokens=8), out))
    s.run()
    assert isinstance(long.error, ContextOverflow)
    assert fills.error is None and len(out[1]) == 20 - 15 + 1  # ended by its context alone
    assert fine.error is None and out[2] == _solo(PROMPTS[0], DecodeConfig(max_tokens=8))


def test_a_long_prompt_is_prefilled_in_chunks_while_the_others_generate():
    config = DecodeConfig(max_tokens=30)
    toy = MultiToy(random_table(26, 1), n_seq=2, n_ctx=400)
    s = Scheduler(toy, budget=64)
    out: dict[int, list[int]] = {}
    s.submit(_request(PROMPTS[0], config, out))
    s.step()
    s.step()  # the first request is generating
    s.submit(_request(list(range(26)) * 10, config, out))  # 260 prompt rows
    before = len(out[0])
    for _ in range(4):
        s.step()
    assert len(out[0]) == before + 4  # one round a step, never stalled by the prompt
    assert all(sum(n for _, n in b) <= 64 + 1 for b in toy.batches)
    s.run()
    assert out[1] == _solo(list(range(26)) * 10, config)


def test_the_prefill_plan_fills_the_budget_oldest_first_with_a_floor():
    assert prefill_plan([(2, 100), (0, 100)], round_rows=10, budget=128) == [(2, 100), (0, 18)]
    # rounds take the whole budget: prompts still move, by the floor
    assert prefill_plan([(1, 500)], round_rows=600, budget=512) == [(1, MIN_PREFILL_ROWS)]


def test_a_slots_cached_prefix_serves_only_its_own_domain():
    config = DecodeConfig(max_tokens=4)
    toy = MultiToy(random_table(26, 1), n_seq=1)
    s = Scheduler(toy)
    out: dict[int, list[int]] = {}
    prompt = list(range(20))
    s.submit(_request(prompt, config, out, domain="alice"))
    s.run()
    rows = sum(n for b in toy.batches for _, n in b)
    s.submit(_request(prompt + [3], config, out, domain="alice"))
    s.run()
    reused = sum(n for b in toy.batches for _, n in b) - rows
    rows += reused
    s.submit(_request(prompt + [3], config, out, domain="bob"))
    s.run()
    fresh = sum(n for b in toy.batches for _, n in b) - rows
    assert reused < 10 and fresh >= 20  # bob's request recomputed the whole prompt


# -- the library's batch call -------------------------------------------------------------------


def test_the_batch_call_gives_each_item_what_it_gets_alone():
    import specpair

    def pair(n_seq):
        return specpair.load(MultiToy(random_table(26, 4), n_seq=n_seq), draft="ngram")

    items = ["abcabcabcab", "hello", [{"role": "user", "content": "xyzzy"}], "qq"]
    alone = [pair(1).generate(messages=i, max_tokens=12) if isinstance(i, list)
             else pair(1).generate(i, max_tokens=12) for i in items]
    together = pair(3).generate_batch(items, max_tokens=12, stop=["zz"])
    for a, t in zip(alone, together):
        cut = a.text.split("zz")[0]
        assert t.text == cut and t.stats.new_tokens == len(t.tokens)
    sampled = pair(3).generate_batch(items, max_tokens=12, temperature=0.8, seed=7)
    again = [pair(1).generate(messages=i, max_tokens=12, temperature=0.8, seed=7)
             if isinstance(i, list) else pair(1).generate(i, max_tokens=12, temperature=0.8,
                                                          seed=7) for i in items]
    assert [g.text for g in sampled] == [g.text for g in again]  # a seed beside any traffic


def test_the_batch_call_refuses_a_model_draft_with_several_slots_and_a_prompt_too_long():
    import specpair
    from specpair.errors import SpecpairError

    p = specpair.load(MultiToy(random_table(26, 4), n_seq=2, n_ctx=32), draft="none")
    with pytest.raises(SpecpairError, match="context holds"):
        p.generate_batch(["abc", "a" * 40], max_tokens=4)
    with pytest.raises(SpecpairError, match="model draft decodes one request at a time"):
        p.generate_batch(["abc"], draft="small.gguf", max_tokens=4)


def test_a_prefix_another_slot_of_the_same_domain_holds_is_copied_not_recomputed():
    """Requests of one API key that share a long prompt prefix (a file, a system prompt) share
    its cached KV: copied from the slot that holds it, even while that slot is generating;
    another key's request recomputes it."""
    config = DecodeConfig(max_tokens=40)
    toy = MultiToy(random_table(26, 1), n_seq=3, n_ctx=400)
    s = Scheduler(toy)
    out: dict[int, list[int]] = {}
    shared = list(range(26)) * 4  # 104 tokens
    s.submit(_request(shared + [1], config, out, domain="alice"))
    for _ in range(3):
        s.step()  # alice's first request is generating
    s.submit(_request(shared + [2, 3], DecodeConfig(max_tokens=4), out, domain="alice"))
    s.submit(_request(shared + [2, 3], DecodeConfig(max_tokens=4), out, domain="bob"))
    s.run()
    rows = {seq: max(n for b in toy.batches[3:] for q, n in b if q == seq) for seq in (1, 2)}
    assert rows[1] < 5  # alice's second request (slot 1): only its own last tokens
    assert rows[2] >= 100  # bob's (slot 2): the whole prompt
    assert out[1] == _solo(shared + [2, 3], DecodeConfig(max_tokens=4))
    assert out[2] == out[1] and out[0] == _solo(shared + [1], config)
