"""auto cannot poison its own costs: a draft's cost is charged as drafting really costs (K = 1
probes included), the cost file is validated, merged under a lock and read as medians, a curve
point no batch can physically cost is ignored, and a run on a busy machine stores no timings."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

from specpair.auto import costs
from specpair.auto.adaptive import PROBE_EVERY, AdaptiveDrafter, Candidate
from specpair.auto.curve import CostCurve
from specpair.auto.planner import plan, remember
from specpair.backends import BackendConfig
from specpair.core.decode import DecodeConfig
from specpair.core.sampling import SamplingConfig
from specpair.drafters import ModelDrafter, NgramDrafter
from specpair.schedule import decode_steps

from .toy import FakeClock, ScriptBackend, ToyBackend


class CostedToy(ToyBackend):
    """A draft model whose every evaluated token costs `per_token` simulated seconds."""

    def __init__(self, table, *, clock, per_token):
        super().__init__(table)
        self.clock, self.per_token = clock, per_token

    def eval(self, tokens, *, all_logits=True):
        self.clock.now += self.per_token * len(tokens)
        return super().eval(tokens, all_logits=all_logits)


def test_a_draft_probed_at_k1_learns_its_true_cost_per_token():
    """Plain wins on a 2-core-like curve, so the model draft is only probed, at K = 1, once every
    PROBE_EVERY rounds, each time after a long catch-up. Its learned cost must be what a drafted
    token costs (one evaluation), not ~0 (the catch-up left out, and nothing else measured: the
    bug) nor the catch-up spread over one token."""
    v, per_token = 20, 0.3
    clock = FakeClock()
    script = [int(t) for t in np.random.default_rng(0).integers(0, v - 1, size=600)]
    target = ScriptBackend(script, vocab=v, clock=clock, cost=lambda n: 1.0 + 0.7 * (n - 1))
    draft = ModelDrafter(CostedToy(np.zeros((v, v)), clock=clock, per_token=per_token),
                         sampling=SamplingConfig(), rng=np.random.default_rng(0), clock=clock)
    cand = Candidate.with_prior(draft, free=False, prior=[0.0], max_k=16)
    auto = AdaptiveDrafter([cand], CostCurve(), max_k=16)
    for _ in decode_steps(target, auto, script[:20], rng=np.random.default_rng(0), clock=clock,
                          config=DecodeConfig(max_tokens=8 * PROBE_EVERY, draft_tokens=16)):
        pass
    probes = [k for name, k in auto.chosen if name == draft.name]
    assert len(probes) >= 5 and set(probes) == {1}
    assert cand.measured_seconds / cand.measured_tokens == pytest.approx(per_token, rel=0.1)
    assert cand.seconds_per_token == pytest.approx(per_token, rel=0.1)


@pytest.fixture
def cache(tmp_path, monkeypatch):
    monkeypatch.setattr(costs, "cache_file", lambda: tmp_path / "costs.json")
    return tmp_path / "costs.json"


KEY = "v|cpu|verify|gguf|m.gguf:1|device=CPU|dtype=auto|threads=2|n_ctx=4096"
DRAFT_KEY = "v|cpu|draft|gguf|d.gguf:1|device=CPU|dtype=auto|threads=2|n_ctx=4096"


def test_the_file_keeps_medians_of_runs_and_ages_old_ones_out(cache):
    for value in (1.0, 9.0, 1.2, 1.1, 1.3, 1.4):
        costs.save({DRAFT_KEY: value})
    # the last five runs, 9.0 among them: their median, 1.3 (one bad run cannot move it far)
    assert costs.load()[DRAFT_KEY] == pytest.approx(1.3)
    assert len(json.loads(cache.read_text())["entries"][DRAFT_KEY]) == costs.MAX_RUNS


def test_a_long_curve_point_outlives_runs_that_decoded_plain(cache):
    """Each run stores the points it measured: a K = 64 round measured once must still be known
    after many requests that drafted nothing (auto would otherwise explore it again, paying
    for a long draft in every fifth request)."""
    costs.save({KEY: [0.030] + [None] * 63 + [0.62]})
    for i in range(12):
        costs.save({KEY: [0.031 + i / 1000]})
    curve = costs.load()[KEY]
    assert len(curve) == 65 and curve[64] == pytest.approx(0.62)
    assert curve[0] == pytest.approx(0.031 + 9 / 1000)  # the median of the last five singles
    for i in range(costs.MAX_RUNS):  # five newer measurements of that point replace it
        costs.save({KEY: [0.030] + [None] * 63 + [0.50 + i / 100]})
    assert costs.load()[KEY][64] == pytest.approx(0.52)
    assert len(json.loads(cache.read_text())["entries"][KEY]) == costs.MAX_RUNS


def test_bad_entries_are_dropped_with_a_warning_never_a_type_error(cache, capsys):
    cache.write_text(json.dumps({"format": 2, "entries": {
        KEY: [[0.05, 0.08], "nonsense", [0.05, -1], [None, 0.1]],
        DRAFT_KEY: [0.02, "x", float("inf"), {"a": 1}],
        "v|alphas|x|raw": [[0.5, 2.0]],
        "garbage": "not a list"}}))
    loaded = costs.load()
    assert "invalid cost entries ignored" in capsys.readouterr().err
    assert loaded[KEY] == [0.05, 0.08] and loaded[DRAFT_KEY] == 0.02
    assert "v|alphas|x|raw" not in loaded
    cache.write_text('{"format": 2, "entries": ')  # truncated
    assert costs.load() == {}
    cache.write_text(json.dumps({KEY: [0.05, "bad"], DRAFT_KEY: 0.02}))  # the first format
    assert costs.load() == {DRAFT_KEY: 0.02}
    assert costs.save({DRAFT_KEY: 0.03}) and costs.load()[DRAFT_KEY] == pytest.approx(0.025)


def test_two_processes_updating_at_once_lose_nothing(cache):
    script = (
        "import sys\n"
        "from pathlib import Path\n"
        "from specpair.auto import costs\n"
        f"costs.cache_file = lambda: Path({str(cache)!r})\n"
        "for i in range(40):\n"
        "    costs.save({f'v|cpu|draft|gguf|p{sys.argv[1]}-{i}|x': 0.01 + i / 1000})\n")
    procs = [subprocess.Popen([sys.executable, "-c", script, str(w)]) for w in (1, 2)]
    assert all(p.wait(timeout=120) == 0 for p in procs)
    entries = json.loads(cache.read_text())["entries"]
    assert len(entries) == 80


def test_a_process_reads_the_file_once_and_sees_another_processes_write(cache, monkeypatch):
    """auto loads the cache at every generation and saves after it: a server parses and
    validates the file only when it changed, and a write by another process is still seen."""
    assert costs.save({DRAFT_KEY: 0.02})
    parsed = []
    real = costs._parse
    monkeypatch.setattr(costs, "_parse", lambda path: parsed.append(path) or real(path))
    for _ in range(3):
        assert costs.load() == {DRAFT_KEY: 0.02}
        assert costs.save({DRAFT_KEY: 0.02})
    assert parsed == []  # what this process wrote is what it holds
    other = ("import sys\nfrom pathlib import Path\nfrom specpair.auto import costs\n"
             f"costs.cache_file = lambda: Path({str(cache)!r})\n"
             "costs.save({'v|cpu|draft|gguf|other|x': 0.5})\n")
    subprocess.run([sys.executable, "-c", other], check=True, timeout=120)
    assert costs.load()["v|cpu|draft|gguf|other|x"] == pytest.approx(0.5)
    assert len(parsed) == 1
    cache.write_text("{not json")  # a file damaged in place is read again, not trusted
    assert costs.load() == {}


def test_an_impossible_curve_point_is_ignored_and_heals():
    """A batch of 2 stored at 6.2 single steps (measured while the machine was busy) cannot be
    a cost: it is ignored on load, and the run's own measurement replaces it."""
    poisoned = [0.036, 0.225]
    curve = CostCurve(poisoned)
    assert curve.measured() == {1: 0.036} and curve.dropped == 1
    assert curve.estimate()[1] < 2 * 0.036
    curve.observe(2, 0.3)  # contention during this run: ignored too
    curve.observe(2, 0.055)
    assert curve.measured()[2] == pytest.approx(0.055)


def test_a_busy_run_stores_acceptance_but_no_timings(cache):
    target = ScriptBackend([0] * 50, vocab=8, clock=FakeClock(), cost=lambda n: 1.0)
    target.device = "CPU (test)"
    p = plan(target, "gguf", BackendConfig(threads=2), free=[NgramDrafter()], kind="raw")
    p.drafter.curve.observe(1, 0.05)
    p.drafter.cpu_seconds, p.drafter.wall_seconds = 1.0, 2.0  # 25% of two threads' time
    assert remember(p, config=BackendConfig(threads=2)) is False
    stored = costs.load()
    assert p.target_key not in stored and any("|alphas|" in k for k in stored)
    assert any("machine was busy" in n for n in p.notes)
    p.drafter.cpu_seconds = 3.8  # 95%: idle machine
    assert remember(p, config=BackendConfig(threads=2)) is True
    assert costs.load()[p.target_key][0] == pytest.approx(0.05)


def test_a_stream_read_slowly_is_not_judged_busy(cache, monkeypatch):
    """The busy check divided CPU time by the generator's whole life, including the time it
    waited at `yield` while the caller forwarded a piece: a UI reading 20 ms a piece was
    judged busy, and no cost was ever stored. Simulated time: a round takes 4 ms of CPU and
    wall, the caller 20 ms of wall only."""
    import types

    from specpair.auto import adaptive

    now = {"cpu": 0.0, "wall": 0.0}
    fake = types.SimpleNamespace(process_time=lambda: now["cpu"],
                                 perf_counter=lambda: now["wall"])
    monkeypatch.setattr(adaptive, "time", fake)

    class Burning(ScriptBackend):  # each eval takes CPU, as a model's would
        def eval(self, tokens, *, all_logits=True):
            now["cpu"] += 0.004
            now["wall"] += 0.004
            return super().eval(tokens, all_logits=all_logits)

    target = Burning([0] * 30, vocab=8, clock=FakeClock(), cost=lambda n: 1.0)
    target.device = "CPU (test)"
    p = plan(target, "gguf", BackendConfig(threads=1), free=[NgramDrafter()], kind="raw")
    for _ in decode_steps(target, p.drafter, [1, 2, 3], config=DecodeConfig(max_tokens=20),
                          rng=np.random.default_rng(0)):
        now["wall"] += 0.02  # the caller, forwarding the piece
    assert p.drafter.wall_seconds == pytest.approx(p.drafter.cpu_seconds)
    assert remember(p, config=BackendConfig(threads=1)) is True
    assert p.target_key in costs.load()
