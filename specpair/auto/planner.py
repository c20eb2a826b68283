"""`draft="auto"`, the default drafter: never slower than plain decoding by more than noise, from
the first token, and faster wherever a drafter can win.

No calibration decode. What it needs is either known or learned while decoding:
- costs (the target's verify curve, a model draft's cost per token) come from the cost cache
  (auto/costs.py), filled by `specpair advise` or by earlier runs; missing points are learned
  from the decode rounds themselves;
- acceptance starts from a prior stored per pair and kind of text by earlier runs (or a
  conservative default) and is learned online (auto/adaptive.py);
- the free drafters (lookups) are always candidates; a model draft is loaded only when its
  costs allow a speedup even at 100% acceptance: on a 2-core CPU the 0.5B draft for the 1.5B
  target cannot, and is not loaded; on a GPU, where verifying a few tokens is nearly free, it
  can. An unmeasured draft's cost is estimated from the weights a token reads (GGUF headers).
After decoding, `remember` stores what this run measured, unless the machine was busy.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from ..backends import Backend, BackendConfig
from ..backends.device import usable_cpus
from ..core.drafter import Drafter
from ..errors import SpecpairError
from . import costs
from .adaptive import AdaptiveDrafter, Candidate
from .costmodel import CostModel, predicted_speedup
from .curve import CURVE_POINTS, CostCurve

AUTO_MAX_K = CURVE_POINTS - 1
# A model draft is loaded only if, at 100% acceptance, it would beat plain decoding by this
# margin: loading costs seconds, real acceptance is well below 100%, and predictions err by
# 15-20% (docs/MEASUREMENTS.md). Unmeasured costs are estimated, with the same margin.
LOAD_MARGIN = 1.3
# Timings of a run whose process got less CPU than this share of its threads' wall time were
# taken beside other work (a verify curve of 173 ms a token against 90 ms idle was seen): they
# are not the machine's costs and are not stored.
BUSY_SHARE = 0.6
MODEL_MAX_K = 16  # a model draft drafts at most this many tokens a round
# A model draft not loaded yet must be able to save this many times its load time within the
# call's tokens, at 100% acceptance (real acceptance is well below): on a 2-vCPU Xeon, auto
# once loaded gemma-3-270m (3 s) for `generate -n 64` (6 s plain) and never drafted with it.
LOAD_PAYBACK = 2.0
LOAD_BYTES_PER_S = 100e6  # a first load's estimate: file read, context, tokenizers compared


@dataclass
class AutoPlan:
    drafter: AdaptiveDrafter
    notes: list[str] = field(default_factory=list)  # one line each, for stderr
    setup_seconds: float = 0.0
    target_key: str = ""
    kind: str = ""
    on_cpu: bool = True  # the target runs on the CPU, wholly or partly (where busy timings
    # are detectable)
    # drafter name -> cost key of each paid drafter: where its cost per token is stored
    draft_keys: dict[str, str] = field(default_factory=dict)
    priors: str = ""  # where its acceptance is stored: the kind, and whose (an API key's)
    load_costs: dict[str, float] = field(default_factory=dict)  # seconds each load took

    def to_dict(self) -> dict:
        paid = [c for c in self.drafter.candidates if not c.free]
        return {"notes": self.notes, "setup_seconds": self.setup_seconds, "kind": self.kind,
                "rounds": self.drafter.rounds_by_choice(),
                "alphas": self.drafter.learned_alphas(),
                "draft_seconds_per_token": {c.name: c.seconds_per_token for c in paid},
                "measured_draft_seconds_per_token": {
                    c.name: c.measured_seconds / c.measured_tokens for c in paid
                    if c.measured_tokens},
                "verify_seconds": {str(n): s for n, s in self.drafter.curve.measured().items()},
                "decide_seconds_per_round": (self.drafter.decide_seconds
                                             / max(1, self.drafter.decided_rounds)),
                "explored": self.drafter.explored}


def _prior_key(target_key: str, drafter_name: str, kind: str, proposal: str = "") -> str:
    """Where a drafter's acceptance on a kind of text is stored; with `proposal`, its
    acceptance for one kind of its proposals (Draft.kind: "match 4-7")."""
    name = f"{drafter_name}@{proposal}" if proposal else drafter_name
    return f"{target_key}|alphas|{name}|{kind}"


def _kind_priors(stored: dict, target_key: str, drafter_name: str, kind: str) -> dict:
    """The stored acceptance per kind of proposal of one drafter on one kind of text."""
    head, tail = f"{target_key}|alphas|{drafter_name}@", f"|{kind}"
    return {key[len(head):-len(tail)]: value for key, value in stored.items()
            if key.startswith(head) and key.endswith(tail) and isinstance(value, list)}


def best_possible_speedup(verify: Sequence[float], per_token: float, max_k: int, *,
                          per_call_tokens: float = 0.0) -> float:
    """The speedup at 100% acceptance: what no drafter with these costs can exceed.
    `per_call_tokens`: tokens a round drafts beyond k (a text-level draft drafts k + 2)."""
    cost = CostModel(tuple(verify), per_token, per_call_tokens * per_token)
    return max(predicted_speedup(cost, [1.0], k) for k in range(1, min(max_k, cost.max_k) + 1))


@dataclass(frozen=True)
class ModelOption:
    """A model drafter auto may load: where its file is (or will be), what a token of it
    costs relative to the target (estimated from the files), where its cost is stored, and how
    to load it (which checks the pair first). The estimates are functions: the planner asks
    for them only when the costs it already has leave the question open, cheapest first."""

    name: str
    cost_key: str
    # estimated seconds per token / the target's (the weights a token reads: GGUF headers)
    relative_cost: Callable[[], float]
    extra_tokens: Callable[[], int]  # tokens drafted per round beyond k (text-level: 2; the
    # pair's verdict, which may need the tokenizers compared)
    load: Callable[[], Drafter]
    # what loading it would cost: nothing once loaded (the pair keeps it), else the seconds an
    # earlier load took here (stored under load_key), else its file's size at LOAD_BYTES_PER_S
    loaded: Callable[[], bool] = lambda: True
    load_key: str = ""
    size: int = 0


def plan(target: Backend, engine: str, config: BackendConfig, *, free: Sequence[Drafter] = (),
         models: Sequence[ModelOption] = (), forced: Drafter | None = None,
         forced_key: str | None = None, kind: str, max_k: int = AUTO_MAX_K,
         fresh: bool = False, domain: str = "", max_tokens: int | None = None) -> AutoPlan:
    """The auto drafter for `target`. `free` drafters (lookups) are always candidates;
    `models` are loaded only if they can win; `forced` (a model drafter the user named, with
    adaptive K) is always a candidate. `fresh` ignores the cost cache: a first run on a new
    machine. `domain`: whose acceptance priors it starts from and stores (an API key's digest:
    what one key's requests taught auto never steers another's; "": everyone's). `max_tokens`:
    the call's, over which a model not loaded yet must pay for its load. Nothing here
    decodes."""
    t0 = time.perf_counter()
    priors = f"{kind}|key={domain}" if domain else kind
    stored = {} if fresh else costs.load()
    target_key = costs.cost_key("verify", engine, target.path, config, target.device)
    curve = _stored_curve(stored, target_key)
    notes: list[str] = []
    if not curve.stored:
        notes.append("no cost measurements for this machine and target yet: learning them "
                     "while decoding (no extra work), stored for next time; `specpair advise` "
                     "measures everything at once")
    if curve.dropped:
        notes.append(f"{curve.dropped} stored verify costs were impossible (a batch dearer than "
                     "its tokens one by one: measured on a busy machine) and are ignored")
    candidates: list[Candidate] = []
    draft_keys: dict[str, str] = {}
    load_costs: dict[str, float] = {}
    for drafter in free:
        prior = stored.get(_prior_key(target_key, drafter.name, priors)) or []
        candidates.append(Candidate.with_prior(
            drafter, free=True, prior=prior, max_k=max_k,
            kind_priors=_kind_priors(stored, target_key, drafter.name, priors)))
    if forced is not None:
        per_token = stored.get(forced_key) if forced_key else None
        if forced_key:
            draft_keys[forced.name] = forced_key
        prior = stored.get(_prior_key(target_key, forced.name, priors)) or []
        candidates.append(Candidate.with_prior(forced, free=False, prior=prior,
                                               max_k=min(max_k, MODEL_MAX_K),
                                               seconds_per_token=per_token or 0.0))
    for option in models:
        name = option.name
        if not curve.known:
            notes.append(f"{name}: not loaded: the target's costs here are not known yet")
            continue
        verify = curve.estimate()
        per_token = stored.get(option.cost_key)
        measured = per_token is not None
        if per_token is None:
            per_token = option.relative_cost() * verify[0]
        # decided by cost first, with no tokens beyond k (the best case): a draft that cannot
        # win even so is ruled out without comparing the pair's vocabularies
        best = best_possible_speedup(verify, per_token, min(max_k, MODEL_MAX_K))
        if best >= LOAD_MARGIN:
            extra = option.extra_tokens()
            if extra:
                best = best_possible_speedup(verify, per_token, min(max_k, MODEL_MAX_K),
                                             per_call_tokens=extra)
        if best < LOAD_MARGIN:
            how = (f"at {per_token / verify[0]:.2f} of a target step per token" if measured else
                   f"at an estimated {per_token / verify[0]:.2f} of a target step per token "
                   f"(the weights a token reads; `specpair advise --draft {name}` measures "
                   "it)")
            notes.append(f"{name}: not loaded: {how} it cannot win here even if every draft "
                         f"token were accepted (best {best:.2f}x, needs {LOAD_MARGIN}x)")
            continue
        was_loaded = option.loaded()
        if max_tokens and not was_loaded:
            load_s = stored.get(option.load_key) or option.size / LOAD_BYTES_PER_S
            saved = max_tokens * verify[0] * (1 - 1 / best)
            if saved < LOAD_PAYBACK * load_s:
                notes.append(f"{name}: not loaded: loading it takes about {load_s:.1f} s, and "
                             f"over {max_tokens} tokens it could save at most {saved:.1f} s "
                             "even if every draft token were accepted")
                continue
        t_load = time.perf_counter()
        try:
            drafter = option.load()
        except SpecpairError as e:  # the pair does not line up, or the model is missing
            notes.append(f"{name}: not loaded: {e}")
            continue
        if option.load_key and not was_loaded:
            load_costs[option.load_key] = time.perf_counter() - t_load
        prior = stored.get(_prior_key(target_key, drafter.name, priors)) or []
        candidates.append(Candidate.with_prior(drafter, free=False, prior=prior,
                                               max_k=min(max_k, MODEL_MAX_K),
                                               seconds_per_token=per_token))
        draft_keys[drafter.name] = option.cost_key
        notes.append(f"{name}: loaded (it can win here: up to {best:.2f}x at 100% acceptance)")
    adaptive = AdaptiveDrafter(candidates, curve, max_k=max_k)
    on_cpu = "CPU" in target.device  # partly offloaded models too (backends' device labels)
    return AutoPlan(adaptive, notes, time.perf_counter() - t0, target_key, kind, on_cpu,
                    draft_keys, priors, load_costs)


def batch_curve(target: Backend, engine: str, config: BackendConfig, *, points: int,
                fresh: bool = False) -> CostCurve:
    """The target's seconds per batch of n rows for a scheduler of several slots: the stored
    verify curve (one request's rounds, the same rows) to start from, extended to `points`
    rows (several requests' rounds and prompt chunks) and learned from every step."""
    return _stored_curve({} if fresh else costs.load(),
                         costs.cost_key("verify", engine, target.path, config, target.device),
                         points=points)


def _stored_curve(stored: dict, target_key: str, *, points: int = CURVE_POINTS) -> CostCurve:
    """The verify curve the cost cache holds for a target (None there: learned from scratch)."""
    value = stored.get(target_key)
    return CostCurve(value if isinstance(value, list) else None, points=points)


def busy_share(plan_: AutoPlan, config: BackendConfig) -> float | None:
    """The process's CPU time over its threads' wall time while decoding (None: not
    measured). Well below 1 on a CPU target means another process took the cores."""
    d = plan_.drafter
    if not d.wall_seconds:
        return None
    return d.cpu_seconds / ((config.threads or usable_cpus()) * d.wall_seconds)


def remember(plan_: AutoPlan, *, config: BackendConfig) -> bool:
    """Store this run's acceptance, and, unless the machine was busy, the costs it measured
    (the verify curve's points, each paid drafter's cost per token): one run each, the cache
    keeps medians. Returns whether the timings were stored."""
    drafter = plan_.drafter
    updates: dict = {}
    priors = plan_.priors or plan_.kind
    for cand in drafter.candidates:
        if cand.drafted_tokens or cand.free:
            updates[_prior_key(plan_.target_key, cand.name, priors)] = cand.alphas
            for proposal, acceptance in cand.by_kind.items():
                if acceptance.observed:  # judged this run (or carried from a stored prior)
                    updates[_prior_key(plan_.target_key, cand.name, priors,
                                       proposal)] = acceptance.alphas
    share = busy_share(plan_, config)
    busy = plan_.on_cpu and share is not None and share < BUSY_SHARE
    if busy:
        plan_.notes.append(f"timings not stored: the process had {share:.0%} of its threads' "
                           "time (the machine was busy)")
    else:
        session = drafter.curve.session()
        if session and session[0] is not None:
            updates[plan_.target_key] = session
        updates.update(plan_.load_costs)
        for cand in drafter.candidates:
            key = plan_.draft_keys.get(cand.name)
            if key and cand.measured_tokens:
                updates[key] = cand.measured_seconds / cand.measured_tokens
    if updates:
        costs.save(updates)
    return not busy
