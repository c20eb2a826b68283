"""`specpair steer`: can a draft steer its target? The study as a command.

A draft with its own system prompt ("Answer like a pirate.") leans one way; the target sees the
user's conversation unchanged. For each setting (plain sampling, exact verification, lenience
L < 1, typical acceptance) the study samples N outputs and measures a trait (a regex or a word
list, per 100 words) with a 95% interval, its difference from plain sampling (Welch's t-test),
the exact total-variation distance of the first token's distribution from the target's (from
the target's and the draft's probabilities, lossy.py's closed forms), acceptance, and speed.
Under exact verification the theorem says: no steering. Below L = 1: this much, for this much
speed.
"""

from __future__ import annotations

import json
import math
import os
import re
import time
import zlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
from scipy import stats as sps

from ..backends import Backend, sync
from ..core.acceptance import (
    EXACT,
    LENIENCE,
    TYPICAL,
    AcceptanceRule,
    lenient_distribution,
    typical_distribution,
)
from ..core.decode import DecodeConfig
from ..core.prompt import encode_prompt
from ..core.sampling import SamplingConfig, make_transform
from ..core.stats import DecodeStats
from ..drafters import ModelDrafter, SystemPromptDrafter
from ..errors import SpecpairError
from ..generation import stream_pieces
from .benchstats import summarize

# a practical value, then far below it: a draft's favourite words can have target probabilities
# of 1e-11 (the pirate study's first token), and lenience passes x only with min(1, p/(L q))
DEFAULT_LENIENCES = (0.1, 1e-5, 1e-10)
PIRATE_SYSTEM = "You are a pirate. Start every sentence with 'Arr,' and call the user 'matey'."

PIRATE_WORDS = ("arr", "arrr", "ahoy", "matey", "mateys", "ye", "yer", "aye", "me hearty",
                "hearties", "landlubber", "scallywag", "booty", "treasure", "plunder", "sea",
                "ship", "captain", "shiver", "timbers", "avast", "grog", "buccaneer", "pirate")


def trait_counter(trait: str) -> Callable[[str], float]:
    """Occurrences per 100 words of a regex (`re:PATTERN`), a comma-separated word list, or
    the built-in `pirate` list."""
    if trait == "pirate":
        words = PIRATE_WORDS
    elif trait.startswith("re:"):
        try:
            pattern = re.compile(trait[3:], re.IGNORECASE)
        except re.error as e:
            raise SpecpairError(f"--trait: bad regex: {e}") from None
        return lambda text: 100 * len(pattern.findall(text)) / max(1, len(text.split()))
    else:
        words = tuple(w.strip().lower() for w in trait.split(",") if w.strip())
        if not words:
            raise SpecpairError("--trait: give re:PATTERN, pirate, or a comma-separated list")
    pattern = re.compile(r"\b(" + "|".join(re.escape(w) for w in words) + r")\b",
                         re.IGNORECASE)
    return lambda text: 100 * len(pattern.findall(text)) / max(1, len(text.split()))


@dataclass(frozen=True)
class Setting:
    name: str
    rule: AcceptanceRule | None  # None: plain sampling, the reference

    @property
    def lenience(self) -> float | None:
        if self.rule is None or self.rule.kind == TYPICAL:
            return None
        return self.rule.lenience if self.rule.kind == LENIENCE else 1.0


def settings_for(leniences: Sequence[float], typical: bool) -> list[Setting]:
    out = [Setting("plain", None), Setting("exact (L=1)", AcceptanceRule())]
    out += [Setting(f"L={lv:g}", AcceptanceRule(kind=LENIENCE, lenience=lv))
            for lv in leniences]
    if typical:
        out.append(Setting("typical", AcceptanceRule(kind=TYPICAL)))
    return out


def first_token_tv(p: np.ndarray, q: np.ndarray, rule: AcceptanceRule | None) -> float:
    """Total variation between the first token's output distribution and the target's."""
    if rule is None or rule.exact:
        return 0.0
    if rule.kind == LENIENCE:
        out = lenient_distribution(p, q, rule.lenience)
    else:
        out = typical_distribution(p, q, rule.epsilon, rule.delta)
    return float(0.5 * np.abs(out - p).sum())


def study_header(*, target: str, draft: str, user: str, draft_system: str, max_tokens: int,
                 k: int, sampling: SamplingConfig) -> dict:
    """What a samples file's records depend on: a rerun continues a file only when these match
    (the trait is counted from the stored text, so it may change between runs)."""
    return {"target": target, "draft": draft, "user": user, "draft_system": draft_system,
            "max_tokens": max_tokens, "draft_tokens": k, "sampling": vars(sampling)}


def load_samples(path: str, header: dict) -> list[dict]:
    """The samples a stopped study left in `path` (JSON lines: the header, then one record per
    sample). A new file gets the header. A file from another study is refused rather than mixed
    in; a last line cut short by a kill is dropped."""
    if not os.path.exists(path) or os.path.getsize(path) == 0:
        with open(path, "w") as f:
            f.write(json.dumps({"study": header}) + "\n")
        return []
    with open(path) as f:
        lines = f.read().splitlines()
    try:
        theirs = json.loads(lines[0])["study"]
    except (json.JSONDecodeError, KeyError, TypeError, IndexError):
        raise SpecpairError(f"{path} is not a steer samples file: give another "
                            "--samples-file") from None
    if theirs != header:
        changed = sorted(k for k in header.keys() | theirs.keys()
                         if header.get(k) != theirs.get(k))
        raise SpecpairError(f"{path} holds samples of another study (differs in "
                            f"{', '.join(changed)}): give another --samples-file, or the "
                            "same options as the run that wrote it")
    records = []
    for n, line in enumerate(lines[1:], start=2):
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError:
            if n != len(lines):
                raise SpecpairError(f"{path}: line {n} is corrupt; remove it to go "
                                    "on") from None
            with open(path, "w") as f:  # drop the torn last line so appends stay valid
                f.write("\n".join(lines[:-1]) + "\n")
    return records


def append_sample(path: str, record: dict) -> None:
    with open(path, "a") as f:
        f.write(json.dumps(record) + "\n")


def _seed(sampling: SamplingConfig, setting: str, i: int) -> np.random.Generator:
    # one independent stream per (setting, sample): adding a setting or samples later
    # leaves the samples already taken valid
    return np.random.default_rng([sampling.seed or 0, zlib.crc32(setting.encode()), i])


def run_study(target: Backend, draft: Backend, *, user: str, draft_system: str, trait: str,
              samples: int, max_tokens: int, sampling: SamplingConfig, k: int,
              leniences: Sequence[float] = DEFAULT_LENIENCES, typical: bool = True,
              records: list[dict] | None = None,
              on_record: Callable[[dict], None] = lambda r: None,
              advance: Callable[[int], None] = lambda n: None) -> dict:
    """Samples `samples` outputs per setting, the settings interleaved (sample i of every
    setting, then sample i + 1), so that speed ratios are measured side by side and a stopped
    study has the same number of samples in every setting. `records` holds samples already
    taken (a stopped run's file): they are kept, not redone; each new one goes to `on_record`."""
    if sampling.greedy:
        raise SpecpairError("steer measures distributions: give --temperature > 0")
    count = trait_counter(trait)
    prompt = encode_prompt(target, user, chat=True)
    draft_prompt = encode_prompt(target, [{"role": "system", "content": draft_system},
                                          {"role": "user", "content": user}], chat=True)
    transform = make_transform(sampling)
    p = transform(sync(target, prompt)[0])
    q = transform(sync(draft, draft_prompt)[0])
    settings = settings_for(leniences, typical)
    records = records if records is not None else []
    done = {(r["setting"], r["i"]) for r in records}
    for i in range(samples):
        for setting in settings:
            advance(1)
            if (setting.name, i) in done:
                continue
            rng = _seed(sampling, setting.name, i)
            drafter = None
            if setting.rule is not None:
                drafter = SystemPromptDrafter(
                    ModelDrafter(draft, sampling=sampling, rng=rng), target_prompt_len=len(
                        prompt), draft_prompt=draft_prompt)
            config = DecodeConfig(max_tokens=max_tokens, draft_tokens=k, sampling=sampling,
                                  acceptance=setting.rule or AcceptanceRule())
            stats = DecodeStats()
            t0 = time.perf_counter()
            text = "".join(piece.text for piece in stream_pieces(
                target, drafter, prompt, config=config, rng=rng, stats=stats))
            record = {"setting": setting.name, "i": i, "text": text,
                      "tokens": stats.new_tokens, "seconds": time.perf_counter() - t0,
                      "drafted": stats.drafted, "accepted": stats.accepted}
            records.append(record)
            on_record(record)
    rows = {}
    for setting in settings:
        mine = sorted((r for r in records if r["setting"] == setting.name and r["i"] < samples),
                      key=lambda r: r["i"])
        rows[setting.name] = {
            "rates": [count(r["text"]) for r in mine],
            "seconds": [r["seconds"] for r in mine], "tokens": [r["tokens"] for r in mine],
            "drafted": sum(r["drafted"] for r in mine),
            "accepted": sum(r["accepted"] for r in mine),
            "examples": [r["text"][:300] for r in mine[:2]], "setting": setting}
    return _summarize(rows, p, q, samples=samples, max_tokens=max_tokens, trait=trait,
                      draft_system=draft_system, user=user, sampling=sampling)


def _tps(row: dict) -> float:
    # all tokens over all time: outputs that stop early at EOS weigh by their length
    return sum(row["tokens"]) / sum(row["seconds"]) if sum(row["seconds"]) else 0.0


def _summarize(rows, p, q, **about) -> dict:
    plain = rows["plain"]
    sigma = float(np.std(plain["rates"], ddof=1)) if len(plain["rates"]) > 1 else 0.0
    n = len(plain["rates"])
    # smallest shift Welch's test detects with 80% power at alpha 0.05 (normal approximation)
    detectable = (sps.norm.ppf(0.975) + sps.norm.ppf(0.8)) * sigma * math.sqrt(2 / n)
    table = []
    for name, row in rows.items():
        s = summarize(row["rates"])
        entry = {"setting": name, "lenience": row["setting"].lenience,
                 "exact": row["setting"].rule is None or row["setting"].rule.exact,
                 "trait_mean": s.mean, "trait_ci95": [s.ci_low, s.ci_high],
                 "tokens_per_second": _tps(row),
                 "mean_tokens": float(np.mean(row["tokens"])),
                 "speed_vs_plain": _tps(row) / _tps(plain) if _tps(plain) else 0.0,
                 "acceptance_rate": row["accepted"] / row["drafted"] if row["drafted"]
                 else None,
                 "first_token_tv": first_token_tv(p, q, row["setting"].rule),
                 "examples": row["examples"]}
        if name != "plain":
            t = sps.ttest_ind(row["rates"], plain["rates"], equal_var=False)
            entry["p_value_vs_plain"] = float(t.pvalue) if not math.isnan(t.pvalue) else 1.0
            entry["difference"] = s.mean - float(np.mean(plain["rates"]))
        table.append(entry)
    exact = next(e for e in table if e["setting"].startswith("exact"))
    lossy = [e for e in table if not e["exact"]]
    if all(not any(row["rates"]) for row in rows.values()):
        return {"about": about | {"sampling": vars(about["sampling"])}, "table": table,
                "detectable_shift": None,
                "verdict": "The trait never appeared in any setting: this run cannot tell "
                           "steering apart; use a trait the draft's prompt actually produces, "
                           "more samples or longer outputs"}
    if exact["p_value_vs_plain"] >= 0.05:
        verdict = (f"At L = 1 no detectable steering (p = {exact['p_value_vs_plain']:.2f}; with "
                   f"{n} samples per setting the test detects a shift of "
                   f"{detectable:.2f} per 100 words with 80% power)")
    else:
        verdict = (f"At L = 1 the trait differs from plain sampling (p = "
                   f"{exact['p_value_vs_plain']:.3g}): a false positive at 5%, or a bug")
    if lossy:
        strongest = max(lossy, key=lambda e: e["difference"])
        verdict += (f"; below 1, {strongest['setting']} moves the trait by "
                    f"{strongest['difference']:+.2f} per 100 words (p = "
                    f"{strongest['p_value_vs_plain']:.3g}) at {strongest['speed_vs_plain']:.2f}x "
                    "plain speed.")
    return {"about": about | {"sampling": vars(about["sampling"])}, "table": table,
            "detectable_shift": detectable, "verdict": verdict}


def markdown(report: dict) -> str:
    a = report["about"]
    lines = [f"### Can a draft steer its target? trait `{a['trait']}`, draft system prompt "
             f"\"{a['draft_system']}\", {a['samples']} samples x {a['max_tokens']} tokens, "
             f"temperature {a['sampling']['temperature']}", "",
             "| setting | exact | trait per 100 words [95% CI] | vs plain (p) | first-token TV "
             "| acceptance | mean length | speed vs plain |", "|---|---|---|---|---|---|---|---|"]
    for e in report["table"]:
        lo, hi = e["trait_ci95"]
        ci = "n/a" if math.isnan(lo) else f"[{lo:.2f}, {hi:.2f}]"
        vs = "reference" if "p_value_vs_plain" not in e else \
            f"{e['difference']:+.2f} ({e['p_value_vs_plain']:.3g})"
        acc = "-" if e["acceptance_rate"] is None else f"{e['acceptance_rate']:.1%}"
        lines.append(f"| {e['setting']} | {'yes' if e['exact'] else '**no (lossy)**'} | "
                     f"{e['trait_mean']:.2f} {ci} | {vs} | {e['first_token_tv']:.3f} | {acc} | "
                     f"{e['mean_tokens']:.0f} | {e['speed_vs_plain']:.2f}x |")
    return "\n".join(lines + ["", f"**{report['verdict']}**", ""])


def plot(report: dict, path: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = [e for e in report["table"] if e["lenience"] is not None]
    rows.sort(key=lambda e: -e["lenience"])
    x = [e["lenience"] for e in rows]
    fig, left = plt.subplots(figsize=(7, 4))
    means = [e["trait_mean"] for e in rows]
    err = [[m - e["trait_ci95"][0] for m, e in zip(means, rows)],
           [e["trait_ci95"][1] - m for m, e in zip(means, rows)]]
    left.errorbar(x, means, yerr=np.nan_to_num(err), marker="o", color="C0", capsize=3,
                  label="trait rate")
    plain = next(e for e in report["table"] if e["setting"] == "plain")
    left.axhline(plain["trait_mean"], color="C0", linestyle=":", label="plain sampling")
    left.set(xlabel="lenience L (1 = exact)", ylabel="trait per 100 words")
    if min(x) < 0.01:  # the study spans decades: L = 1e-10 passes what 0.1 stops
        left.set_xscale("log")
    left.invert_xaxis()
    right = left.twinx()
    right.plot(x, [e["speed_vs_plain"] for e in rows], marker="s", color="C1",
               label="speed vs plain")
    right.set_ylabel("speed vs plain")
    fig.legend(loc="upper left", fontsize=8)
    fig.suptitle("steering vs lenience", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


__all__ = ["EXACT", "run_study", "markdown", "plot", "trait_counter"]
