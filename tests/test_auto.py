"""`--draft auto` on toy backends with hand-set costs (a simulated clock, no sleeping): it picks
plain when nothing can win, the n-gram lookup when it wins, a model draft when it wins; it does not
load a drafter that cannot win; and its regret stays small when the text turns unpredictable."""

from dataclasses import replace

import numpy as np
import pytest

from specpair.auto import costs
from specpair.auto.adaptive import PROBE_EVERY, AdaptiveDrafter, Candidate
from specpair.auto.curve import CostCurve
from specpair.auto.planner import ModelOption, plan, remember
from specpair.backends import BackendConfig
from specpair.core.decode import DecodeConfig
from specpair.core.stats import DecodeStats
from specpair.drafters import NgramDrafter
from specpair.schedule import decode_steps

from .toy import FakeClock, OracleDrafter, ScriptBackend

V = 50
EOS = V - 1
def CPU(n):  # noqa: N802  a 2-core CPU: a batch of n costs ~0.6 n steps
    return 1.0 + 0.6 * (n - 1)


def GPU(n):  # noqa: N802  memory-bound: verifying a few tokens is nearly free
    return 1.0 + 0.02 * (n - 1)



def repetitive(n, seed=0):
    """Text that repeats itself: a 12-token phrase over and over (n-gram lookup wins)."""
    phrase = list(np.random.default_rng(seed).integers(0, V - 1, size=12))
    return [int(t) for t in (phrase * (n // 12 + 1))[:n]]


def unpredictable(n, seed=1):
    return [int(t) for t in np.random.default_rng(seed).integers(0, V - 1, size=n)]


def decode(target, drafter, prompt, max_tokens, clock, k=16):
    stats = DecodeStats()
    out = []
    for step in decode_steps(target, drafter, prompt, rng=np.random.default_rng(0), clock=clock,
                             config=DecodeConfig(max_tokens=max_tokens, draft_tokens=k)):
        stats.add(step)
        out += step.tokens
    return out, stats


def auto(candidates, curve=None):
    return AdaptiveDrafter(candidates, curve or CostCurve(), max_k=16)


def run_both(script, n_prompt, cost, candidates_fn, max_tokens, curve=None):
    """Decode `script` plainly and with auto (from `curve`, as stored), on simulated clocks:
    (plain s, auto s, auto)."""
    clock = FakeClock()
    plain_out, plain = decode(ScriptBackend(script, vocab=V, clock=clock, cost=cost), None,
                              script[:n_prompt], max_tokens, clock)
    clock = FakeClock()
    drafter = auto(candidates_fn(clock), curve)
    out, stats = decode(ScriptBackend(script, vocab=V, clock=clock, cost=cost), drafter,
                        script[:n_prompt], max_tokens, clock)
    assert out == plain_out  # exact: auto changes speed, never output
    return plain.decode_seconds, stats.decode_seconds, drafter


def ngram_only(clock):
    return [Candidate.with_prior(NgramDrafter(), free=True, prior=[], max_k=16)]


def test_plain_when_nothing_can_win():
    script = unpredictable(400)
    plain, spent, drafter = run_both(script, 40, CPU, ngram_only, 300)
    assert spent <= plain * 1.03
    chosen = drafter.rounds_by_choice()
    assert chosen.get("plain", 0) >= 0.9 * sum(chosen.values())


def test_ngram_when_it_wins():
    script = repetitive(600)
    plain, spent, drafter = run_both(script, 60, CPU, ngram_only, 400)
    assert spent < plain * 0.7
    assert any(name == "ngram" and k > 1 for name, k in drafter.chosen)


def test_model_draft_when_it_wins_and_not_when_it_cannot():
    script = unpredictable(400)  # no repetition: only the model can help

    def with_model(accuracy, cost):
        def make(clock):
            model = OracleDrafter(script, vocab=V, clock=clock, cost=cost, accuracy=accuracy)
            return ngram_only(clock) + [Candidate.with_prior(model, free=False, prior=[0.5],
                                                             max_k=16, seconds_per_token=cost)]
        return make

    # GPU-like costs and a good cheap draft: auto drafts with the model, and wins
    plain, spent, drafter = run_both(script, 40, GPU, with_model(0.9, 0.1), 300)
    assert spent < plain * 0.6
    assert sum(k for name, k in drafter.chosen if name == "oracle") > 100
    # CPU-like costs and a draft costing 0.6 of a step: it loses, and auto stays plain
    plain, spent, drafter = run_both(script, 40, CPU, with_model(0.6, 0.6), 300)
    assert spent <= plain * 1.03


def test_regret_stays_small_when_the_text_turns_unpredictable():
    """Half the text repeats (n-gram wins), then it stops repeating: the time lost in the
    second half must be small against the time saved in the first."""
    first, second = repetitive(300), unpredictable(300, seed=5)
    script = first + second
    clock = FakeClock()
    plain_times, auto_times = [], []
    for drafter in (None, auto(ngram_only(clock))):
        clock.now = 0.0
        target = ScriptBackend(script, vocab=V, clock=clock, cost=CPU)
        marks = {}
        produced = 30
        for step in decode_steps(target, drafter, script[:30], rng=np.random.default_rng(0),
                                 clock=clock, config=DecodeConfig(max_tokens=560,
                                                                  draft_tokens=16)):
            produced += len(step.tokens)
            if produced >= 300 and "half" not in marks:
                marks["half"] = clock.now
        (auto_times if drafter else plain_times).append((marks["half"], clock.now))
    (p_half, p_end), (a_half, a_end) = plain_times[0], auto_times[0]
    saved = p_half - a_half
    lost = (a_end - a_half) - (p_end - p_half)
    assert saved > 0.2 * p_half
    # at most about one full-K round is lost where the text stops repeating (a K = 16 draft
    # rejected at once costs a batch of 17 instead of one token)
    assert lost < CPU(17) and lost < 0.05 * (p_end - p_half)


def test_a_paid_drafter_is_probed_rarely_while_plain_wins():
    clock = FakeClock()
    script = unpredictable(400)
    model = OracleDrafter(script, vocab=V, clock=clock, cost=0.6, accuracy=0.0)
    drafter = auto([Candidate.with_prior(model, free=False, prior=[0.0], max_k=16,
                                         seconds_per_token=0.6)])
    decode(ScriptBackend(script, vocab=V, clock=clock, cost=CPU), drafter, script[:20], 320,
           clock)
    assert model.calls <= 320 / PROBE_EVERY + 1


def test_a_paid_drafter_never_drafts_past_what_was_observed_plus_one():
    clock = FakeClock()
    script = unpredictable(200)
    model = OracleDrafter(script, vocab=V, clock=clock, cost=0.01, accuracy=1.0)
    drafter = auto([Candidate.with_prior(model, free=False, prior=[1.0], max_k=16,
                                         seconds_per_token=0.01)])
    decode(ScriptBackend(script, vocab=V, clock=clock, cost=GPU), drafter, script[:20], 60,
           clock)
    ks = [k for name, k in drafter.chosen if name == "oracle"]
    assert ks[0] <= 2  # one position observed (the prior): at most K = 2 at first
    for earlier, later in zip(ks, ks[1:]):
        assert later <= max(ks[: ks.index(earlier) + 1]) + 1


@pytest.fixture
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("SPECPAIR_CACHE", str(tmp_path))
    return tmp_path


def _option(path, relative_cost, loaded, config=None):
    def load():
        loaded.append(path)
        return OracleDrafter([0], vocab=V, clock=FakeClock(), cost=0.0, accuracy=1.0)
    key = costs.cost_key("draft", "gguf", str(path), config or BackendConfig(), "toy")
    return ModelOption(name="draft.gguf", cost_key=key, relative_cost=lambda: relative_cost,
                       extra_tokens=lambda: 0, load=load)


def test_plan_does_not_load_a_model_draft_that_cannot_win(cache, tmp_path):
    target_file = tmp_path / "target.gguf"
    target_file.write_bytes(b"x" * 1000)
    target = ScriptBackend([0], vocab=V, clock=FakeClock(), cost=CPU)
    target.path = str(target_file)
    config = BackendConfig()
    # measured: a CPU verify curve, and a draft at 0.6 of a target step per token
    costs.save({costs.cost_key("verify", "gguf", str(target_file), config, "toy"):
                [CPU(n) for n in range(1, 18)],
                costs.cost_key("draft", "gguf", str(tmp_path / "d.gguf"), config, "toy"): 0.6})
    loaded = []
    p = plan(target, "gguf", config, free=[NgramDrafter()], kind="raw",
             models=[_option(tmp_path / "d.gguf", 0.44, loaded)])
    assert loaded == [] and [c.name for c in p.drafter.candidates] == ["ngram"]
    assert any("cannot win" in note for note in p.notes)
    # the same draft on a GPU-like curve can win: it is loaded
    for _ in range(3):  # medians of runs: the GPU-like runs outvote the CPU one
        costs.save({costs.cost_key("verify", "gguf", str(target_file), config, "toy"):
                    [GPU(n) for n in range(1, 18)]})
    p = plan(target, "gguf", config, free=[NgramDrafter()], kind="raw",
             models=[_option(tmp_path / "d.gguf", 0.44, loaded)])
    assert loaded and len(p.drafter.candidates) == 2


def test_plan_asks_for_a_drafts_estimates_only_when_its_costs_leave_the_question_open(
        cache, tmp_path):
    """Estimating a draft's cost reads its file; its extra tokens need the pair's tokenizers
    compared (seconds). Neither is asked when what is already known decides."""
    target_file = tmp_path / "target.gguf"
    target_file.write_bytes(b"x" * 1000)
    target = ScriptBackend([0], vocab=V, clock=FakeClock(), cost=CPU)
    target.path = str(target_file)
    config = BackendConfig()
    asked: list[str] = []

    def option(relative: float) -> ModelOption:
        key = costs.cost_key("draft", "gguf", str(tmp_path / f"{relative}.gguf"), config, "toy")
        return ModelOption(
            name=f"{relative}.gguf", cost_key=key,
            relative_cost=lambda: asked.append(f"cost {relative}") or relative,
            extra_tokens=lambda: asked.append(f"compare {relative}") or 2,
            load=lambda: OracleDrafter([0], vocab=V, clock=FakeClock(), cost=0.0, accuracy=1.0))

    # the target's costs unknown: nothing is estimated
    p = plan(target, "gguf", config, free=[NgramDrafter()], kind="raw", models=[option(0.44)])
    assert asked == [] and len(p.drafter.candidates) == 1
    # a CPU curve: the cost estimate alone rules the draft out; the vocabularies are not compared
    costs.save({costs.cost_key("verify", "gguf", str(target_file), config, "toy"):
                [CPU(n) for n in range(1, 18)]})
    p = plan(target, "gguf", config, free=[NgramDrafter()], kind="raw", models=[option(0.44)])
    assert asked == ["cost 0.44"] and len(p.drafter.candidates) == 1
    # a GPU-like curve: the cost leaves it open, so the pair is compared, then loaded
    for _ in range(3):
        costs.save({costs.cost_key("verify", "gguf", str(target_file), config, "toy"):
                    [GPU(n) for n in range(1, 18)]})
    asked.clear()
    p = plan(target, "gguf", config, free=[NgramDrafter()], kind="raw", models=[option(0.05)])
    assert asked == ["cost 0.05", "compare 0.05"] and len(p.drafter.candidates) == 2


def test_first_run_measures_nothing_up_front_and_remembers(cache, tmp_path):
    target_file = tmp_path / "target.gguf"
    target_file.write_bytes(b"x" * 1000)
    script = repetitive(300)
    clock = FakeClock()
    target = ScriptBackend(script, vocab=V, clock=clock, cost=CPU)
    target.path = str(target_file)
    config = BackendConfig()
    loaded = []
    p = plan(target, "gguf", config, free=[NgramDrafter()], kind="raw",
             models=[_option(tmp_path / "d.gguf", 0.44, loaded)])
    assert loaded == [] and any("learning them while decoding" in n for n in p.notes)
    assert target.evals == []  # nothing was evaluated to plan
    decode(target, p.drafter, script[:40], 200, clock)
    assert remember(p, config=config)
    stored = costs.load()[p.target_key]
    assert stored[0] == pytest.approx(1.0) and stored[1] is None or stored[1] > 1.0
    p2 = plan(target, "gguf", config, free=[NgramDrafter()], kind="raw")
    assert p2.drafter.curve.stored and not p2.notes
    assert p2.drafter.candidates[0].alphas[0] > 0.5  # the n-gram prior learned on this text


def test_cost_key_names_everything_that_changes_a_cost(tmp_path):
    f = tmp_path / "m.gguf"
    f.write_bytes(b"12345")
    base = costs.cost_key("verify", "gguf", str(f), BackendConfig(), "CPU (x)")
    for other in (BackendConfig(dtype="float16"), BackendConfig(threads=7),
                  BackendConfig(n_ctx=2048), BackendConfig(gpu_layers=10)):
        assert costs.cost_key("verify", "gguf", str(f), other, "CPU (x)") != base
    # the device a model ran on: the GPU's name where there is one
    assert costs.cost_key("verify", "gguf", str(f), BackendConfig(), "NVIDIA H200") != base
    from specpair import __version__

    assert base.startswith(__version__ + "|")


def test_threads_default_to_the_cpus_this_process_may_use(monkeypatch):
    monkeypatch.setattr(costs.os, "sched_getaffinity", lambda pid: {0}, raising=False)
    assert costs.usable_cpus() == 1


def EPYC(n):  # noqa: N802  a 2-core EPYC: short batches cost nearly n steps, long ones amortize
    return 0.93 * n if n <= 8 else 0.93 * 8 + 0.45 * (n - 8)


def test_auto_explores_a_long_draft_nobody_measured_and_stores_the_point():
    """Only batches of 1-5 are known (their extrapolation says long drafts lose); on text that
    repeats, auto tries a long draft once in a while, measures it, and then drafts long."""
    plain, spent, drafter = run_both(repetitive(700), 60, EPYC, ngram_only, 600,
                                     CostCurve([EPYC(n) for n in range(1, 6)]))
    assert drafter.explored >= 1
    measured = [n for n, s in enumerate(drafter.curve.session(), 1) if s is not None and n > 5]
    assert measured  # the explored batch sizes are now measured points, stored by the planner
    assert any(k >= 8 for name, k in drafter.chosen)
    assert spent < plain * 0.8


def test_auto_does_not_re_explore_what_earlier_runs_measured():
    """A curve measured at every length (as earlier runs store it): on text where nothing
    pays, no exploration and no loss. Before, every request re-explored points not measured
    in that request: 3-5% end to end on Spec-Bench."""
    plain, spent, drafter = run_both(unpredictable(400), 40, EPYC, ngram_only, 300,
                                     CostCurve([EPYC(n) for n in range(1, 18)]))
    assert drafter.explored == 0
    assert spent <= plain * 1.03


def test_a_stored_point_one_busy_round_inflated_is_measured_again_and_stops_capping_k():
    """An earlier run measured batches of 1-9 and, in one busy round, 17 at 1.6 times its cost
    (another process had the cores). With that point, every K above 8 looks like a loss and
    auto drafts K = 8 where 16 pays. The point lies far above the line through the points below
    it, so auto drafts at that size once, measures it again, and the lower measurement replaces
    it (contention only makes a batch slower)."""
    stored: list[float | None] = [EPYC(n) for n in range(1, 10)] + [None] * 7 + [EPYC(17) * 1.6]
    curve = CostCurve(stored)
    assert curve.doubtful(17) and not any(curve.doubtful(n) for n in range(1, 17))
    plain, spent, drafter = run_both(repetitive(700), 60, EPYC, ngram_only, 600, curve)
    assert drafter.explored >= 1
    assert drafter.curve.seconds[16] == pytest.approx(EPYC(17))
    assert not drafter.curve.doubtful(17)
    assert drafter.curve.session()[16] == pytest.approx(EPYC(17))  # stored for the next run
    # as fast as with the point right: K = 16 from the first round that drafts
    right = stored[:16] + [EPYC(17)]
    _, spent_right, _ = run_both(repetitive(700), 60, EPYC, ngram_only, 600, CostCurve(right))
    assert spent <= spent_right * 1.01 and spent < plain * 0.8
    assert {k for _, k in drafter.chosen} == {0, 16}


def test_acceptance_stored_per_kind_of_proposal_is_where_the_next_run_starts():
    """A lookup's acceptance is learned per kind of proposal (a 2-token match predicts worse
    than an 8-token one) and stored; the next run's decisions start from the stored value
    for that kind, not from the conservative default every run."""
    from specpair.auto.adaptive import DEFAULT_PRIOR_ALPHA

    from .toy import ToyBackend

    target = ToyBackend(np.zeros((4, 4), dtype=np.float32))
    config = BackendConfig()
    first = plan(target, "toy", config, free=[NgramDrafter()], kind="code")
    ngram = first.drafter.candidates[0]
    for _ in range(30):  # long matches, nearly always accepted
        ngram.learn(8, 8, kind="match 8+")
    remember(first, config=config)
    second = plan(target, "toy", config, free=[NgramDrafter()], kind="code")
    alphas = second.drafter.candidates[0].of_kind("match 8+").alphas
    assert min(alphas[:8]) > 0.9
    # a kind never stored still starts from the default; another kind of text too
    assert second.drafter.candidates[0].of_kind("match 2").alphas[0] == \
        pytest.approx(DEFAULT_PRIOR_ALPHA)
    other = plan(target, "toy", config, free=[NgramDrafter()], kind="chat")
    assert other.drafter.candidates[0].of_kind("match 8+").alphas[0] == \
        pytest.approx(DEFAULT_PRIOR_ALPHA)


def test_the_time_auto_spends_deciding_is_its_own_cost_not_the_model_drafts():
    """A lookup that takes 0.5 s to ask (auto's own work this round) and a model draft at 0.1 s
    a token: the model's cost per token is learned as 0.1, and the 0.5 s as auto's."""
    from specpair.core.drafter import Draft, Drafter

    clock = FakeClock()

    class SlowLookup(Drafter):
        name = "slow lookup"

        def propose(self, context, k):
            clock.now += 0.5
            return Draft([])

    script = repetitive(300)
    model = OracleDrafter(script, vocab=V, clock=clock, cost=0.1, accuracy=1.0)
    candidates = [Candidate.with_prior(SlowLookup(), free=True, prior=[], max_k=16),
                  Candidate.with_prior(model, free=False, prior=[0.9] * 8, max_k=16,
                                       seconds_per_token=0.1)]
    drafter = AdaptiveDrafter(candidates, CostCurve([GPU(n) for n in range(1, 18)]), max_k=16,
                              clock=clock)
    decode(ScriptBackend(script, vocab=V, clock=clock, cost=GPU), drafter, script[:20], 100,
           clock)
    paid = candidates[1]
    assert paid.measured_tokens > 20
    assert paid.measured_seconds / paid.measured_tokens == pytest.approx(0.1)
    assert paid.seconds_per_token == pytest.approx(0.1)
    assert drafter.decide_seconds == pytest.approx(0.5 * drafter.decided_rounds)


def test_a_model_draft_is_loaded_only_if_it_can_pay_for_its_load_within_the_call(cache,
                                                                                  tmp_path):
    """Loading a draft costs seconds once per pair: auto loads it only where, at 100%
    acceptance, it could save twice that within the call's tokens; the load time measured
    here is stored, and a draft already loaded costs nothing to use."""
    target_file = tmp_path / "target.gguf"
    target_file.write_bytes(b"x" * 1000)
    target = ScriptBackend([0], vocab=V, clock=FakeClock(), cost=GPU)
    target.path = str(target_file)
    config = BackendConfig()
    for _ in range(3):  # a GPU-like curve (1 s a step): a cheap draft can win
        costs.save({costs.cost_key("verify", "gguf", str(target_file), config, "toy"):
                    [GPU(n) for n in range(1, 18)]})
    loaded: list = []

    def option(is_loaded):
        o = _option(tmp_path / "d.gguf", 0.05, loaded)
        return replace(o, loaded=lambda: is_loaded, load_key="load-key", size=int(600e9))

    # about 6000 s to load: 64 tokens (64 s plain) cannot pay for it
    p = plan(target, "gguf", config, kind="raw", models=[option(False)], max_tokens=64)
    assert loaded == [] and any("could save at most" in n for n in p.notes)
    # once loaded (by an earlier call), using it costs nothing more
    p = plan(target, "gguf", config, kind="raw", models=[option(True)], max_tokens=64)
    assert loaded and len(p.drafter.candidates) == 1 and not p.load_costs
    # a load measured here is stored: the next decision uses it, not the file's size
    loaded.clear()
    costs.save({"load-key": 1.0})
    p = plan(target, "gguf", config, kind="raw", models=[option(False)], max_tokens=64)
    assert loaded and "load-key" in p.load_costs
    remember(p, config=config)
    assert costs.load()["load-key"] < 1.0  # this load's seconds joined the stored one


def test_what_one_api_keys_requests_taught_auto_does_not_steer_anothers(cache, tmp_path):
    """Acceptance priors are stored per key (the call's cache domain): the second key's first
    request starts from the neutral prior, not from the first key's record."""
    target_file = tmp_path / "target.gguf"
    target_file.write_bytes(b"x" * 1000)
    target = ScriptBackend([0], vocab=V, clock=FakeClock(), cost=CPU)
    target.path = str(target_file)
    config = BackendConfig()
    neutral = plan(target, "gguf", config, free=[NgramDrafter()], kind="chat",
                   domain="key-b").drafter.candidates[0].alphas
    first = plan(target, "gguf", config, free=[NgramDrafter()], kind="chat", domain="key-a")
    first.drafter.candidates[0].acceptance.learn(8, 8)  # key a's text repeats: all accepted
    remember(first, config=config)
    again = plan(target, "gguf", config, free=[NgramDrafter()], kind="chat", domain="key-a")
    other = plan(target, "gguf", config, free=[NgramDrafter()], kind="chat", domain="key-b")
    everyone = plan(target, "gguf", config, free=[NgramDrafter()], kind="chat")
    assert again.drafter.candidates[0].alphas[0] > neutral[0]
    assert other.drafter.candidates[0].alphas == neutral
    assert everyone.drafter.candidates[0].alphas == neutral
