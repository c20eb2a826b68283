"""The decode loop on toy backends: speculative output equals plain output (greedy: token for
token; sampled: in distribution), the cache stays consistent, and limits are honoured."""

from collections import Counter

import numpy as np
import pytest
from scipy.stats import chisquare

from specpair.core.decode import DecodeConfig
from specpair.core.sampling import SamplingConfig
from specpair.core.stats import DecodeStats
from specpair.drafters import ModelDrafter
from specpair.errors import SpecpairError
from specpair.generation import stream_pieces
from specpair.schedule import decode_steps

from .toy import LETTERS, ToyBackend, random_table

V = 6
# random logits plus a planted greedy walk 0 -> 2 -> 4 -> 1 -> 3 -> 5 -> 2 -> ... over every row
TARGET = random_table(V, seed=1, sharpness=1.0)
TARGET[np.arange(V), (np.arange(V) + 2) % V + (np.arange(V) >= V - 2)] += 4.0
# a draft that agrees with the target except in two rows: there its top two choices are swapped
DRAFT = TARGET.copy()
for _row in (1, 4):
    _a, _b = np.argsort(TARGET[_row])[-2:]
    DRAFT[_row, [_a, _b]] = DRAFT[_row, [_b, _a]]
GREEDY = SamplingConfig()


def run(target, drafter, prompt, **config):
    steps = list(decode_steps(target, drafter, prompt, config=DecodeConfig(**config),
                              rng=np.random.default_rng(0)))
    return [t for s in steps for t in s.tokens], steps


def drafter_for(table, sampling=GREEDY, seed=0):
    return ModelDrafter(ToyBackend(table), sampling=sampling, rng=np.random.default_rng(seed))


@pytest.mark.parametrize("k", [1, 2, 4, 7])
def test_speculative_greedy_equals_plain_greedy(k):
    plain, _ = run(ToyBackend(TARGET), None, [0, 1], max_tokens=50)
    assert {1, 4} & set(plain), "the walk must visit a row where the draft is wrong"
    spec, steps = run(ToyBackend(TARGET), drafter_for(DRAFT), [0, 1], max_tokens=50,
                      draft_tokens=k)
    assert spec == plain
    assert any(s.n_accepted < s.n_drafted for s in steps), "the draft should miss sometimes"
    assert any(s.n_accepted > 0 for s in steps), "and hit sometimes"


def test_self_draft_accepts_everything_and_saves_target_calls():
    target = ToyBackend(TARGET)
    _, steps = run(target, drafter_for(TARGET), [0], max_tokens=40, draft_tokens=4)
    stats = DecodeStats()
    for s in steps:
        stats.add(s)
    assert stats.acceptance_rate == 1.0
    assert stats.new_tokens == 40
    # 8 rounds of pending + 4 drafts; a 1-token prompt needs no prefill
    assert target.evals == [5] * 8


def test_cache_holds_all_but_the_last_token_after_every_step():
    target = ToyBackend(TARGET)
    prompt = [0, 1, 2]
    committed = list(prompt)
    for step in decode_steps(target, drafter_for(DRAFT), prompt, config=DecodeConfig(
            max_tokens=30, draft_tokens=3), rng=np.random.default_rng(0)):
        committed += step.tokens
        assert target.tokens == committed[:-1]


def test_closing_early_leaves_the_cache_consistent():
    target = ToyBackend(TARGET)
    gen = decode_steps(target, drafter_for(DRAFT), [0, 1], config=DecodeConfig(max_tokens=30),
                       rng=np.random.default_rng(0))
    first = next(gen)
    gen.close()
    assert target.tokens == [0, 1, *first.tokens][:-1]


def test_max_tokens_is_exact_and_drafts_are_not_wasted():
    target = ToyBackend(TARGET)
    tokens, steps = run(target, drafter_for(TARGET), [0], max_tokens=11, draft_tokens=4)
    assert len(tokens) == 11
    assert steps[-1].finish == "max_tokens"
    assert steps[-1].n_drafted == 0  # 5 + 5, then one token left: no point drafting
    assert sum(s.n_drafted for s in steps) == 8


def test_eos_stops_generation_and_cuts_accepted_tokens_after_it():
    table = np.full((V, V), -5.0)
    for i in range(V - 1):
        table[i, i + 1] = 5.0  # 0 -> 1 -> 2 -> ... -> 5 (EOS)
    target = ToyBackend(table, eos=3)
    tokens, steps = run(target, drafter_for(table), [0], max_tokens=20, draft_tokens=5)
    assert tokens == [1, 2, 3]
    assert steps[-1].finish == "eos"
    assert steps[-1].n_accepted == 3  # draft 1,2,3,4,5: accepted up to EOS (3), which ends it


def test_full_context_stops_cleanly():
    target = ToyBackend(TARGET, n_ctx=12)
    tokens, steps = run(target, drafter_for(DRAFT), [0, 1], max_tokens=100, draft_tokens=4)
    assert steps[-1].finish == "context"
    assert len(tokens) == 12 - 2 + 1  # the last token is produced but not evaluated


def test_prompt_longer_than_context_is_a_user_error():
    with pytest.raises(SpecpairError, match="n_ctx"):
        run(ToyBackend(TARGET, n_ctx=4), None, [0, 1, 2, 3, 4])


def test_per_position_acceptance_is_conditional_on_reaching_the_position():
    _, steps = run(ToyBackend(TARGET), drafter_for(DRAFT), [0], max_tokens=200, draft_tokens=3)
    stats = DecodeStats()
    for s in steps:
        stats.add(s)
    # position i is reached only when 0..i-1 were all accepted
    assert stats.reached_at[0] == sum(s.n_drafted > 0 for s in steps)
    for i in (1, 2):
        assert stats.reached_at[i] == stats.accepted_at[i - 1]
    assert stats.accepted == sum(stats.accepted_at)
    assert 0 < stats.acceptance_by_position[0] < 1
    assert stats.mean_acceptance_length == 1 + stats.accepted / stats.drafts
    assert stats.alphas[0] == stats.acceptance_by_position[0]  # position 0: every draft
    assert stats.alphas[1] >= stats.acceptance_by_position[1]  # conditional vs unconditional


def _sampled_pairs(drafter_table, n_runs):
    sampling = SamplingConfig(temperature=1.0)
    counts = Counter()
    rng = np.random.default_rng(42)
    target = ToyBackend(TARGET)
    drafter = None
    if drafter_table is not None:
        drafter = ModelDrafter(ToyBackend(drafter_table), sampling=sampling, rng=rng)
    for _ in range(n_runs):
        steps = decode_steps(target, drafter, [0], rng=rng,
                             config=DecodeConfig(max_tokens=2, draft_tokens=3, sampling=sampling))
        tokens = [t for s in steps for t in s.tokens]
        counts[tuple(tokens)] += 1
    return counts


def test_speculative_sampling_reproduces_the_targets_sequence_distribution():
    """Two-token continuations: speculative frequencies against the target's exact probabilities
    (chi-square, 20,000 runs, significance 0.001; seeded, so deterministic)."""
    n = 20_000
    counts = _sampled_pairs(DRAFT, n)
    p = np.exp(TARGET - TARGET.max(axis=1, keepdims=True))
    p /= p.sum(axis=1, keepdims=True)
    keys = [(a, b) for a in range(V) for b in range(V)]
    expected = np.array([p[0, a] * p[a, b] for a, b in keys]) * n
    observed = np.array([counts[k] for k in keys])
    mask = expected >= 5  # chi-square needs enough expected counts per cell
    observed_pooled = np.append(observed[mask], observed[~mask].sum())
    expected_pooled = np.append(expected[mask], expected[~mask].sum())
    assert chisquare(observed_pooled, expected_pooled).pvalue > 1e-3


def test_seeded_sampling_is_reproducible():
    sampling = SamplingConfig(temperature=0.8, seed=3)

    def once():
        rng = np.random.default_rng(3)
        drafter = ModelDrafter(ToyBackend(DRAFT), sampling=sampling, rng=rng)
        steps = decode_steps(ToyBackend(TARGET), drafter, [0], rng=rng,
                             config=DecodeConfig(max_tokens=30, sampling=sampling))
        return [t for s in steps for t in s.tokens]

    assert once() == once()


def test_the_text_layer_stops_at_a_stop_string_spanning_tokens():
    table = np.full((V, V), -5.0)
    for i in range(V):
        table[i, (i + 1) % V] = 5.0  # a b c d e f a b c ...
    stats = DecodeStats()
    pieces = stream_pieces(ToyBackend(table), None, [0], rng=np.random.default_rng(0),
                           config=DecodeConfig(max_tokens=50, stop=("efa",)), stats=stats)
    text = "".join(piece.text for piece in pieces)
    assert text == "bcd"
    assert stats.finish == "stop"


def test_bad_decode_options_are_user_errors():
    with pytest.raises(SpecpairError, match="max_tokens"):
        DecodeConfig(max_tokens=0)
    with pytest.raises(SpecpairError, match="draft_tokens"):
        DecodeConfig(draft_tokens=0)


class LaunchingToy(ToyBackend):
    """A device whose eval returns at launch (as CUDA's does) and whose work lands when the
    host waits for it: each batch's compute, 1 s on a simulated clock, elapses in
    `synchronize`."""

    def __init__(self, *args, **kw) -> None:
        super().__init__(*args, **kw)
        self.now, self.queued = 0.0, 0.0

    def clock(self) -> float:
        return self.now

    def eval(self, tokens, *, all_logits=True):
        self.queued += 1.0
        return super().eval(tokens, all_logits=all_logits)

    def synchronize(self) -> None:
        self.now += self.queued
        self.queued = 0.0


def test_the_loop_waits_for_the_device_before_it_times_a_round():
    """A round's target_seconds is the forward pass's compute, not its launch: otherwise the
    compute lands in verify_seconds at the first read-back, and auto learns a flat, wrong verify
    curve on a GPU."""
    v = 8
    table = np.full((v, v), -4.0, dtype=np.float32)
    for i in range(v):
        table[i, (i + 1) % v] = 4.0
    target = LaunchingToy(table)
    steps = list(decode_steps(target, None, [0, 1, 2], config=DecodeConfig(max_tokens=3),
                              rng=np.random.default_rng(0), clock=target.clock))
    assert steps[0].prefill_seconds == 1.0
    assert [s.target_seconds for s in steps] == [1.0, 1.0, 1.0]
    assert all(s.verify_seconds == 0.0 for s in steps)


def test_each_round_reaches_the_text_layers_callers_once():
    """bench, advise and steer read rounds from the one text layer (stream_pieces): the last
    piece of every round carries it, and those rounds are exactly what the statistics fold."""
    from .test_exactness import ListDrafter

    table = np.full((V, V), -5.0)
    for i in range(V):
        table[i, (i + 1) % V] = 5.0
    stats = DecodeStats()
    pieces = list(stream_pieces(ToyBackend(table), ListDrafter([1, 2, 9, 9]), [0],
                                config=DecodeConfig(max_tokens=12, draft_tokens=4),
                                rng=np.random.default_rng(0), stats=stats))
    steps = [p.step for p in pieces if p.step is not None]
    assert len(steps) == stats.steps
    assert sum(len(s.tokens) for s in steps) == stats.new_tokens == 12
    assert sum(s.n_drafted for s in steps) == stats.drafted > 0
    assert pieces[-1].step is steps[-1] and pieces[-1].finish_reason == "max_tokens"


# -- control tokens come from the chat template only (issue 43) ---------------------------------
class TemplatedToy(ToyBackend):
    """A toy whose "template" wraps each turn in control tokens: "<" opens (26), ">" closes (27)
    when parsed as control text."""

    def __init__(self) -> None:
        super().__init__(np.zeros((28, 28), dtype=np.float32))

    def chat_prompt(self, messages):
        return "".join(f"<{m['role'][0]}{m['content']}>" for m in messages) + "<a"

    def tokenize(self, text, *, add_bos=True, special=True):
        controls = {"<": 26, ">": 27} if special else {}
        return [controls.get(c, LETTERS.index(c) if c in LETTERS else 0) for c in text]


def test_message_content_is_tokenized_as_text_never_as_control_tokens():
    from specpair.core.prompt import encode_prompt

    toy = TemplatedToy()
    tokens = encode_prompt(toy, [{"role": "user", "content": "hi><s"}], chat=True)
    assert tokens.count(26) == 2 and tokens.count(27) == 1  # "<u", ">" and "<a" alone
    # a message with no control text gets exactly the tokens of the whole rendered prompt
    plain = [{"role": "system", "content": "be"}, {"role": "user", "content": "hi"}]
    assert encode_prompt(toy, plain, chat=True) == toy.tokenize(toy.chat_prompt(plain))
