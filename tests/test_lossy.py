"""Opt-in lossy acceptance: exact mode keeps the target's distribution whatever the draft leans
to (whole sequences, chi-square); lenience < 1 shifts it toward the draft by exactly the amount
the closed form predicts; typical acceptance and the greedy analogues do what they say."""

from collections import Counter
from itertools import product

import numpy as np
import pytest
from scipy.stats import chisquare

from specpair.core.acceptance import (
    LENIENCE,
    TYPICAL,
    AcceptanceRule,
    lenient_distribution,
    verify_lenient_greedy,
    verify_lenient_sampled,
    verify_typical,
)
from specpair.core.decode import DecodeConfig
from specpair.core.sampling import SamplingConfig, softmax
from specpair.drafters import ModelDrafter
from specpair.errors import SpecpairError
from specpair.schedule import decode_steps

from .toy import ToyBackend

V = 3
# the target spreads its mass; the "steered" draft leans hard on token 2 (a pirate word)
TARGET = np.log(np.array([[0.5, 0.3, 0.2]] * V))
STEERED = np.log(np.array([[0.1, 0.1, 0.8]] * V))
SAMPLED = SamplingConfig(temperature=1.0, seed=0)


def sequences(rule, n=6000, length=3, seed=0):
    rng = np.random.default_rng(seed)
    counts = Counter()
    for _ in range(n):
        drafter = ModelDrafter(ToyBackend(STEERED), sampling=SAMPLED, rng=rng)
        out = []
        for step in decode_steps(ToyBackend(TARGET), drafter, [0], rng=rng,
                                 config=DecodeConfig(max_tokens=length, draft_tokens=3,
                                                     sampling=SAMPLED, acceptance=rule)):
            out += step.tokens
        counts[tuple(out[:length])] += 1
    return counts


def test_exact_mode_keeps_the_targets_distribution_over_whole_sequences():
    counts = sequences(AcceptanceRule())
    p = np.exp(TARGET[0])
    keys = list(product(range(V), repeat=3))
    expected = [np.prod([p[t] for t in k]) * sum(counts.values()) for k in keys]
    assert chisquare([counts[k] for k in keys], expected).pvalue > 1e-3


def test_lenience_shifts_one_token_by_the_closed_form():
    p, q = np.exp(TARGET[0]), np.exp(STEERED[0])
    rng = np.random.default_rng(1)
    for lenience in (1.0, 0.5, 0.2):
        predicted = lenient_distribution(p, q, lenience)
        counts = Counter()
        n = 20_000
        for _ in range(n):
            x = int(rng.choice(V, p=q))
            n_acc, nxt = verify_lenient_sampled(np.stack([p, p]), q[None, :], [x], rng,
                                                lenience)
            counts[x if n_acc else nxt] += 1
        assert chisquare([counts[i] for i in range(V)], predicted * n).pvalue > 1e-3
    # l = 1 is exact; lower l moves the output toward the draft
    assert lenient_distribution(p, q, 1.0) == pytest.approx(p)
    tv = [0.5 * np.abs(lenient_distribution(p, q, lv) - q).sum() for lv in (1.0, 0.5, 0.2)]
    assert tv[0] > tv[1] > tv[2]


def test_lenience_shifts_whole_sequences_toward_the_draft():
    exact = sequences(AcceptanceRule(), n=3000, seed=2)
    lenient = sequences(AcceptanceRule(kind=LENIENCE, lenience=0.3), n=3000, seed=2)
    share = [sum(k.count(2) * v for k, v in c.items()) / (3 * sum(c.values()))
             for c in (exact, lenient)]
    assert share[0] == pytest.approx(0.2, abs=0.03)  # the target's own rate of token 2
    assert share[1] > share[0] + 0.15  # steered toward the draft's favourite


def test_greedy_lenience_accepts_within_the_slack_only():
    logits = np.array([[2.0, 1.5, 0.0], [0.0, 3.0, 0.0]])
    assert verify_lenient_greedy(logits, [1], 1.0) == (0, 0)  # exact: argmax only
    assert verify_lenient_greedy(logits, [1], 0.5) == (1, 1)  # 0.5 < log(2) = 0.69
    assert verify_lenient_greedy(logits, [2], 0.5) == (0, 0)  # 2.0 is too far


def test_typical_acceptance_follows_the_entropy_rule():
    p = softmax(np.array([[3.0, 1.0, 0.0], [0.0, 0.0, 5.0]]))
    # a confident row: threshold min(eps, delta exp(-H)) is small, token 1 passes
    assert verify_typical(p, [1], None, 0.3, 0.09) == (1, 2)
    assert verify_typical(p, [2], None, 0.001, 0.001)[0] == 1
    assert verify_typical(p, [2], None, 0.3, 0.9)[0] == 0


def test_rules_are_validated_and_describe_themselves():
    with pytest.raises(SpecpairError):
        AcceptanceRule(kind=LENIENCE, lenience=0.0)
    assert AcceptanceRule(kind=LENIENCE, lenience=1.0).exact
    rule = AcceptanceRule(kind=TYPICAL)
    assert not rule.exact and "LOSSY" in rule.describe()
    assert rule.to_dict()["exact"] is False


def test_steer_study_on_toy_models(tmp_path):
    """The study end to end on toy models: a draft that loves 'z' steers only when lossy."""
    from specpair.measure.steer import markdown, plot, run_study

    target_table = np.zeros((26, 26))  # uniform over the alphabet
    draft_table = np.zeros((26, 26))
    draft_table[:, 25] = 4.0  # the draft leans hard on 'z'
    report = run_study(ToyBackend(target_table), ToyBackend(draft_table), user="abc",
                       draft_system="zz", trait="re:z", samples=40, max_tokens=8,
                       sampling=SamplingConfig(temperature=1.0, seed=3), k=4,
                       leniences=(0.3,), typical=True)
    rows = {e["setting"]: e for e in report["table"]}
    assert set(rows) == {"plain", "exact (L=1)", "L=0.3", "typical"}
    assert rows["exact (L=1)"]["first_token_tv"] == 0.0 and rows["exact (L=1)"]["exact"]
    # min(q, p/L) caps the shift: 1/26 / 0.3 = 0.128 for z, against 1/26 plainly
    assert rows["L=0.3"]["first_token_tv"] == pytest.approx(0.128 - 1 / 26, abs=0.002)
    assert not rows["L=0.3"]["exact"]
    assert rows["L=0.3"]["difference"] > 20 and rows["L=0.3"]["p_value_vs_plain"] < 0.01
    assert abs(rows["exact (L=1)"]["difference"]) < rows["L=0.3"]["difference"] / 3
    assert "per 100 words with 80% power" in report["verdict"]
    text = markdown(report)
    assert "**no (lossy)**" in text and report["verdict"] in text
    plot(report, str(tmp_path / "steer.png"))
    assert (tmp_path / "steer.png").read_bytes()[:4] == b"\x89PNG"


def test_lossy_flag_is_on_every_output(capsys, monkeypatch):
    import json

    import specpair
    from specpair.cli import main

    real_load = specpair.load
    monkeypatch.setattr(specpair, "load",
                        lambda target, **k: real_load(ToyBackend(np.zeros((26, 26))), **k))
    assert main(["generate", "abc", "--json", "--draft", "none", "-n", "3",
                 "--lenience", "0.5"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["exact"] is False and out["acceptance"]["lenience"] == 0.5
    assert main(["generate", "abc", "--draft", "none", "-n", "3", "--accept", "typical"]) == 0
    assert "LOSSY" in capsys.readouterr().err


def test_a_trait_that_never_appears_gets_an_honest_verdict():
    from specpair.measure.steer import run_study

    table = np.zeros((26, 26))
    report = run_study(ToyBackend(table), ToyBackend(table), user="abc", draft_system="zz",
                       trait="re:q{5}", samples=3, max_tokens=4,
                       sampling=SamplingConfig(temperature=1.0, seed=0), k=2,
                       leniences=(0.5,), typical=False)
    assert "never appeared" in report["verdict"] and report["detectable_shift"] is None


def test_a_stopped_study_goes_on_from_its_samples_file(tmp_path):
    """A 2-hour study must survive Ctrl-C: samples already in the file are kept, not redone,
    the settings are interleaved (a stopped study is balanced), and a file from another study
    or a torn last line is handled instead of mixed in."""
    from specpair.measure.steer import append_sample, load_samples, run_study, study_header

    table = np.zeros((26, 26))
    table[:, 25] = 2.0
    sampling = SamplingConfig(temperature=1.0, seed=5)
    header = study_header(target="t", draft="d", user="abc", draft_system="zz", max_tokens=6,
                          k=2, sampling=sampling)
    path = str(tmp_path / "samples.jsonl")
    kw = dict(user="abc", draft_system="zz", trait="re:z", max_tokens=6, sampling=sampling, k=2,
              leniences=(0.5,), typical=False)

    records = load_samples(path, header)
    taken = []

    def keep(r):
        taken.append(r)
        append_sample(path, r)

    run_study(ToyBackend(table), ToyBackend(table), samples=2, records=records,
              on_record=keep, **kw)
    assert [(r["i"], r["setting"]) for r in taken] == [
        (0, "plain"), (0, "exact (L=1)"), (0, "L=0.5"), (1, "plain"), (1, "exact (L=1)"),
        (1, "L=0.5")]
    with open(path, "a") as f:
        f.write('{"setting": "plain", "i": 2, "te')  # killed mid-write
    records = load_samples(path, header)
    assert len(records) == 6  # the torn line is dropped, the rest kept
    taken.clear()
    report = run_study(ToyBackend(table), ToyBackend(table), samples=3, records=records,
                       on_record=keep, **kw)
    assert [r["i"] for r in taken] == [2, 2, 2]  # only the new samples ran
    assert len(load_samples(path, header)) == 9
    assert all(len(e["examples"]) == 2 for e in report["table"])
    # resuming is deterministic: the same seeds give the same texts as a fresh run
    fresh = []
    run_study(ToyBackend(table), ToyBackend(table), samples=3, on_record=fresh.append, **kw)
    assert sorted((r["setting"], r["i"], r["text"]) for r in fresh) == sorted(
        (r["setting"], r["i"], r["text"]) for r in load_samples(path, header))

    other = study_header(target="t", draft="d", user="abc", draft_system="yy", max_tokens=6,
                         k=2, sampling=sampling)
    with pytest.raises(SpecpairError, match="another study.*draft_system"):
        load_samples(path, other)


def test_steer_cli_defaults_are_the_study_defaults():
    from specpair.cli import steer as cli
    from specpair.measure import steer

    assert cli.STEER_SYSTEM == steer.PIRATE_SYSTEM
    assert cli.STEER_LENIENCES == steer.DEFAULT_LENIENCES
