"""`--draft auto`, the default drafter: never slower than plain decoding by more than noise, from
the first token, and faster wherever a drafter can win.

No calibration decode. What it needs is either known or learned while decoding:
- costs (the target's verify curve, a model draft's cost per token) come from the cost cache
  (costs.py), filled by `specpair advise` or by earlier runs; missing points are learned from
  the decode rounds themselves;
- acceptance starts from a prior stored per pair and kind of text by earlier runs (or a
  conservative default) and is learned online (adaptive.py);
- the n-gram lookup is always a candidate (free); a model draft is loaded only when its costs
  allow a speedup even at 100% acceptance: on a 2-core CPU the 0.5B draft for the 1.5B target
  cannot, and is not loaded.
After decoding, `remember` stores what was learned for the next run.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from . import costs
from .adaptive import AdaptiveDrafter, Candidate
from .advise import CostModel, predicted_speedup
from .backends import Backend, BackendConfig
from .costs import CostCurve
from .drafters import Drafter
from .errors import SpecpairError

AUTO_MAX_K = 16
# A model draft is loaded only if, at 100% acceptance, it would beat plain decoding by this
# margin: loading costs seconds, real acceptance is well below 100%, and predictions err by
# 15-20% (docs/MEASUREMENTS.md). Unmeasured costs are estimated from file sizes, with the same
# margin.
LOAD_MARGIN = 1.3


@dataclass
class AutoPlan:
    drafter: AdaptiveDrafter
    notes: list[str] = field(default_factory=list)  # one line each, for stderr
    setup_seconds: float = 0.0
    target_key: str = ""
    kind: str = ""
    # drafter name -> (engine, path) of each paid drafter: where its cost per token is stored
    draft_engines: dict[str, tuple[str, str]] = field(default_factory=dict)

    def to_dict(self) -> dict:
        return {"notes": self.notes, "setup_seconds": self.setup_seconds, "kind": self.kind,
                "rounds": self.drafter.rounds_by_choice(),
                "alphas": self.drafter.learned_alphas()}


def _prior_key(target_key: str, drafter_name: str, kind: str) -> str:
    return f"{target_key}|alphas|{drafter_name}|{kind}"


def best_possible_speedup(verify: Sequence[float], per_token: float, max_k: int) -> float:
    """The speedup at 100% acceptance: what no drafter with these costs can exceed."""
    cost = CostModel(tuple(verify), per_token)
    return max(predicted_speedup(cost, [1.0], k) for k in range(1, min(max_k, cost.max_k) + 1))


@dataclass(frozen=True)
class ModelOption:
    """A model drafter auto may load: where its file is (or will be), its size, and how to
    load it (which checks the pair first)."""

    name: str
    engine: str
    path: str
    size: int
    load: Callable[[], Drafter]


def plan(target: Backend, engine: str, config: BackendConfig, *, ngram: Drafter | None,
         models: Sequence[ModelOption] = (), forced: Drafter | None = None, forced_engine:
         tuple[str, str] | None = None, kind: str, max_k: int = AUTO_MAX_K,
         fresh: bool = False) -> AutoPlan:
    """The auto drafter for `target`. `models` are loaded only if they can win; `forced` (a
    model drafter the user named with --adaptive) is always a candidate. `fresh` ignores the
    cost cache: a first run on a new machine. Nothing here decodes."""
    t0 = time.perf_counter()
    stored = {} if fresh else costs.load()
    target_key = costs.cost_key("verify", engine, target.path, config)
    curve_stored = stored.get(target_key)
    curve = CostCurve(curve_stored if isinstance(curve_stored, list) else None)
    notes: list[str] = []
    if not curve.stored:
        notes.append("no cost measurements for this machine and target yet: learning them "
                     "while decoding (no extra work), stored for next time; `specpair advise` "
                     "measures everything at once")
    candidates: list[Candidate] = []
    engines: dict[str, tuple[str, str]] = {}
    if ngram is not None:
        prior = stored.get(_prior_key(target_key, ngram.name, kind)) or []
        candidates.append(Candidate.with_prior(ngram, free=True, prior=prior, max_k=max_k))
    if forced is not None:
        per_token = 0.0
        if forced_engine is not None:
            per_token = stored.get(costs.cost_key("draft", *forced_engine, config)) or 0.0
            engines[forced.name] = forced_engine
        prior = stored.get(_prior_key(target_key, forced.name, kind)) or []
        candidates.append(Candidate.with_prior(forced, free=False, prior=prior, max_k=max_k,
                                               seconds_per_token=per_token))
    for option in models:
        name = option.name
        draft_key = costs.cost_key("draft", option.engine, option.path, config)
        per_token = stored.get(draft_key)
        verify = curve.estimate()
        if not curve.known:
            notes.append(f"{name}: not loaded: the target's costs here are not known yet")
            continue
        if per_token is not None:
            best = best_possible_speedup(verify, per_token, max_k)
            if best < LOAD_MARGIN:
                notes.append(f"{name}: not loaded: at {per_token / verify[0]:.2f} of a target "
                             f"step per token it cannot win here even if every draft token were "
                             f"accepted (best {best:.2f}x, needs {LOAD_MARGIN}x)")
                continue
        else:
            ratio = _size_ratio(option.size, target.path)
            best = best_possible_speedup(verify, ratio * verify[0], max_k)
            if best < LOAD_MARGIN:
                notes.append(f"{name}: not loaded: its cost is not measured here, and at an "
                             f"estimated {ratio:.2f} of a target step (file sizes) it could win "
                             f"at most {best:.2f}x; `specpair advise --draft {name}` measures it")
                continue
            per_token = ratio * verify[0]
        try:
            drafter = option.load()
        except SpecpairError as e:  # the pair does not line up, or the model is missing
            notes.append(f"{name}: not loaded: {e}")
            continue
        prior = stored.get(_prior_key(target_key, drafter.name, kind)) or []
        candidates.append(Candidate.with_prior(drafter, free=False, prior=prior, max_k=max_k,
                                               seconds_per_token=per_token))
        engines[drafter.name] = (option.engine, option.path)
        notes.append(f"{name}: loaded (it can win here: up to {best:.2f}x at 100% acceptance)")
    adaptive = AdaptiveDrafter(candidates, curve, max_k=max_k)
    return AutoPlan(adaptive, notes, time.perf_counter() - t0, target_key, kind, engines)


def _size_ratio(draft_size: int, target_path: str) -> float:
    try:
        return draft_size / Path(target_path).stat().st_size
    except (OSError, ZeroDivisionError):
        return 1.0


def remember(plan_: AutoPlan, *, config: BackendConfig) -> bool:
    """Store the verify curve and acceptance learned by this run, and each paid drafter's
    cost per token (a text-level draft's translation included: it is part of its drafting)."""
    draft_engines = plan_.draft_engines
    drafter = plan_.drafter
    curve = drafter.curve
    updates: dict = {}
    if curve.known:
        updates[plan_.target_key] = list(curve.seconds)  # measured points only (None: not)
    for cand in drafter.candidates:
        if cand.drafted_tokens or cand.free:
            updates[_prior_key(plan_.target_key, cand.name, plan_.kind)] = cand.alphas
        if not cand.free and cand.drafted_tokens and draft_engines and cand.name in draft_engines:
            engine, path = draft_engines[cand.name]
            updates[costs.cost_key("draft", engine, path, config)] = cand.seconds_per_token
    return costs.save(updates) if updates else True
