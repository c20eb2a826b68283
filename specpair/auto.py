"""`--draft auto`: measure (or recall) this machine's costs, calibrate the candidate drafters on
the prompt at hand, and decode with the adviser's choice, wrapped so that it keeps watching
acceptance and falls back to plain decoding when the prediction turns out wrong.

Costs depend on the machine, the target and the drafter, so they are cached (per target file,
drafter, CPU and thread count); acceptance depends on the text, so it is calibrated on the prompt
each time (a few seconds) and then followed online by `AdaptiveDrafter`.
"""

from __future__ import annotations

import json
import os
import platform
from collections.abc import Sequence
from pathlib import Path

from . import __version__
from .adaptive import AdaptiveDrafter
from .advise import Advice, Calibration, CostModel, advise, calibrate, measure_verify_costs
from .backends import Backend
from .drafters import Drafter

AUTO_MAX_K = 8
CALIBRATION_TOKENS = 24
K_CALIBRATION = {"ngram": 8}  # model drafters calibrate at 4: drafting 8 would cost too much
K_CALIBRATION_MODEL = 4


def _cost_cache() -> Path:
    from .models import cache_dir

    return cache_dir() / "costs.json"


def _machine() -> str:
    return f"{platform.machine()}-{platform.processor() or '?'}-{os.cpu_count()}cpu"


def _key(*parts: object) -> str:
    return "|".join(str(p) for p in (__version__, _machine(), *parts))


def _file_id(backend: Backend) -> str:
    try:
        return f"{backend.name}:{os.path.getsize(backend.path)}"
    except OSError:
        return backend.name


def _load_cache() -> dict:
    try:
        return json.loads(_cost_cache().read_text())
    except (OSError, ValueError):
        return {}


def _save_cache(cache: dict) -> None:
    path = _cost_cache()
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(f".{os.getpid()}.tmp")
        tmp.write_text(json.dumps(cache, indent=1))
        os.replace(tmp, path)  # atomic: a concurrent reader sees the old or the new file
    except OSError:
        pass  # a cache we cannot write only costs a re-measurement next time


def verify_costs(target: Backend, prompt: Sequence[int], threads: int | None) -> tuple[float, ...]:
    cache = _load_cache()
    key = _key("verify", _file_id(target), threads)
    if key not in cache:
        cache[key] = list(measure_verify_costs(target, prompt, max_n=AUTO_MAX_K + 1, repeats=2))
        _save_cache(cache)
    return tuple(cache[key])


def choose(target: Backend, candidates: Sequence[Drafter], prompt: Sequence[int], *,
           sampling, threads: int | None) -> tuple[Drafter | None, Advice]:
    """Calibrate each candidate on `prompt`, ask the adviser, and return the drafter to decode
    with: an AdaptiveDrafter (it may still choose K = 0 round by round), or None for plain."""
    verify = verify_costs(target, prompt, threads)
    calibrations: list[Calibration] = []
    for drafter in candidates:
        k_cal = K_CALIBRATION.get(drafter.name, K_CALIBRATION_MODEL)
        calibrations.append(calibrate(target, drafter, [prompt], k_cal=k_cal,
                                      max_tokens=CALIBRATION_TOKENS, sampling=sampling))
    advice = advise(verify, calibrations, max_k=AUTO_MAX_K)
    if advice.choice is None:
        # Start plain, but keep the cheapest candidate ready: the adaptive wrapper probes now
        # and then and switches to drafting if the text becomes predictable.
        pick = min(range(len(candidates)), key=lambda i: calibrations[i].draft_per_token)
    else:
        pick = [c.name for c in candidates].index(advice.choice[0])
    cal = calibrations[pick]
    cost = CostModel(verify, cal.draft_per_token)
    return AdaptiveDrafter(candidates[pick], cost, cal.alphas, max_k=AUTO_MAX_K,
                           lengths=cal.lengths), advice

