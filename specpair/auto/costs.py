"""What things cost on this machine: measured, kept in the cache directory, then known.

Two kinds of cost decide whether speculation pays (auto/costmodel.py has the formula):
- the target's verify curve: seconds to evaluate a batch of n tokens (auto/curve.py);
- each model drafter's seconds per proposed token (a lookup costs ~0);
and acceptance priors per pair and kind of text.

Every figure is keyed by everything that changes it (`cost_key`): the model file, the engine,
the device it ran on (the GPU's name, or the CPU), dtype, threads, context size, this machine and
the specpair version. The file cannot poison itself:
- each key keeps the last MAX_RUNS runs and is read as their median (one bad run cannot move
  it far, and an old bad run ages out); a verify curve keeps the last MAX_RUNS measurements of
  each point, so the long points that one run measured are not forgotten after five runs that
  decoded plain (each run stores only the points it measured);
- it is validated on load: an entry of the wrong type or out of range is dropped with a
  warning, never a TypeError; a curve point above what physics allows is ignored;
- writes merge under a lock and replace the file atomically: two processes that update it at
  once lose nothing, and a reader sees the old file or the new one;
- the planner does not store timings taken while the machine was busy (auto/planner.py).
"""

from __future__ import annotations

import json
import math
import os
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from ..backends.device import machine_id, usable_cpus
from ..core.backend import Backend, sync
from ..core.files import locked, write_atomic
from ..version import __version__
from .curve import CURVE_POINTS

MAX_RUNS = 5
MAX_CURVE_RUNS = 64  # runs kept for a verify curve whose points were measured in different runs
MAX_SECONDS = 600.0  # no single cost is ever this long: such a value is corrupt
CURVE, SCALAR, ALPHAS = "curve", "scalar", "alphas"
FORMAT = 2


def measure_costs(target: Backend, prompt: Sequence[int], sizes: Sequence[int], *,
                  repeats: int = 3) -> dict[int, float]:
    """Median seconds for the target to evaluate a batch of n tokens after `prompt`, for each
    n in `sizes` (the batch contents do not change the cost; the prompt's tokens are reused).
    Costs measured on the device are synchronised by reading the result back."""
    sync(target, prompt)
    base = target.n_past
    filler = [prompt[i % len(prompt)] for i in range(max(sizes))]
    out = {}
    for n in sizes:
        times = []
        for _ in range(repeats):
            t0 = time.perf_counter()
            float(target.eval(filler[:n])[-1][0])  # a value read back: the work is done
            times.append(time.perf_counter() - t0)
            target.rewind(base)
        out[n] = float(np.median(times))
    return out


def model_id(path: str, name: str) -> str:
    """A model file by name and size (a re-quantized file of the same name differs in size)."""
    try:
        return f"{name}:{os.path.getsize(path)}"
    except OSError:
        return name


def cost_key(kind: str, engine: str, path: str, engine_config, device: str) -> str:
    """The cache key of one measured cost: `kind` ("verify", "draft"), the model measured (its
    engine and file), the device it ran on and its BackendConfig (dtype, threads, n_ctx, and
    the layers offloaded: a model split between a GPU and the CPU costs neither's figure)."""
    c = engine_config
    lora = c.lora  # a LoRA makes a model cost more than its file alone
    return "|".join(str(p) for p in (
        __version__, machine_id(), kind, engine, model_id(path, Path(path).name),
        f"device={device}", f"dtype={c.dtype}", f"threads={c.threads or usable_cpus()}",
        f"n_ctx={c.n_ctx}", f"gpu_layers={c.gpu_layers}",
        *([f"lora={model_id(lora, Path(lora).name)}"] if lora else [])))


def cache_file() -> Path:
    from ..models import cache_dir

    return cache_dir() / "costs.json"


def _kind_of(key: str) -> str:
    if "|alphas|" in key:
        return ALPHAS
    return CURVE if "|verify|" in key else SCALAR


def _valid(kind: str, value) -> bool:
    def number(x) -> bool:
        return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)

    if kind == SCALAR:
        return number(value) and 0 < value < MAX_SECONDS
    if not isinstance(value, list) or not value:
        return False
    if kind == ALPHAS:
        return len(value) <= CURVE_POINTS and all(number(a) and 0 <= a <= 1 for a in value)
    return (len(value) <= CURVE_POINTS and number(value[0]) and 0 < value[0] < MAX_SECONDS
            and all(v is None or (number(v) and 0 < v < MAX_SECONDS) for v in value))


# The file as this process last read or wrote it: (its identity, its runs, entries dropped).
# auto reads the cache at every generation and writes it after: a server answering many
# requests would otherwise parse and validate the whole file twice per request (23 + 71 ms on
# a 2-core EPYC with a 456 kB file: 2% of a 128-token reply, MEASUREMENTS.md). Any other
# writer replaces the file (write_atomic), which changes its identity.
_memo: tuple[str, dict[str, list], int] | None = None


def _keep(path: Path, runs: dict[str, list], dropped: int) -> None:
    """Remember the file as it is now, with its runs (nothing if it cannot be read)."""
    global _memo
    from ..models.facts import identity

    try:
        _memo = (identity(path), runs, dropped)
    except OSError:
        _memo = None


def _read(path: Path) -> tuple[dict[str, list], int]:
    """{key: [run, ...]} from the file, and how many entries were dropped as invalid (a
    copy of the dict: callers may replace its values)."""
    from ..models.facts import identity

    try:
        if _memo is not None and _memo[0] == identity(path):
            return dict(_memo[1]), _memo[2]
    except OSError:
        pass  # missing: parsed below as empty
    runs, dropped = _parse(path)
    _keep(path, runs, dropped)
    return dict(runs), dropped


def _parse(path: Path) -> tuple[dict[str, list], int]:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}, 0  # missing (normal) or unreadable: start over
    if not isinstance(data, dict):
        return {}, 1
    raw = data.get("entries") if data.get("format") == FORMAT else {
        k: [v] for k, v in data.items()}  # the first format: one value per key
    if not isinstance(raw, dict):
        return {}, 1
    out, dropped = {}, 0
    for key, runs in raw.items():
        if not isinstance(key, str) or not isinstance(runs, list):
            dropped += 1
            continue
        good = [r for r in runs if _valid(_kind_of(key), r)]
        dropped += len(runs) - len(good)
        if good:
            out[key] = _trim(key, good)
    return out, dropped


def _median(values: list[float]) -> float:
    s = sorted(values)
    mid = len(s) // 2
    return s[mid] if len(s) % 2 else (s[mid - 1] + s[mid]) / 2


def _summary(key: str, runs: list):
    """What a key's runs say: a curve point by point (the median of the runs that measured it;
    CostCurve then ignores, and notes, a point physics rules out), a scalar, or the latest
    acceptance (priors follow the text, not the machine)."""
    kind = _kind_of(key)
    if kind == ALPHAS:
        return list(runs[-1])  # a copy: the runs are kept (_memo)
    if kind == SCALAR:
        return _median(runs)
    width = max(len(r) for r in runs)
    curve: list[float | None] = []
    for i in range(width):
        points = [r[i] for r in runs if i < len(r) and r[i] is not None][-MAX_RUNS:]
        curve.append(_median(points) if points else None)
    return curve


def _trim(key: str, runs: list) -> list:
    """The runs a key keeps: the last MAX_RUNS, and for a verify curve every older run that
    holds one of a point's last MAX_RUNS measurements (at most MAX_CURVE_RUNS runs)."""
    if _kind_of(key) != CURVE:
        return runs[-MAX_RUNS:]
    seen: dict[int, int] = {}
    kept = []
    for run in reversed(runs):
        points = [i for i, v in enumerate(run) if v is not None]
        if any(seen.get(i, 0) < MAX_RUNS for i in points):
            kept.append(run)
        for i in points:
            seen[i] = seen.get(i, 0) + 1
    return kept[::-1][-MAX_CURVE_RUNS:]


def load(*, warn: bool = True) -> dict:
    """{key: value} as auto reads it (medians of the stored runs)."""
    runs, dropped = _read(cache_file())
    if dropped and warn:
        print(f"specpair: warning: {cache_file()}: {dropped} invalid cost entries ignored "
              "(they are removed at the next save)", file=sys.stderr)
    return {key: _summary(key, r) for key, r in runs.items()}


def save(updates: dict) -> bool:
    """Add one run per key in `updates` (invalid values are not stored). Read, merge and
    replace under the lock. Returns False when it cannot be written: that only costs a
    re-measurement."""
    path = cache_file()
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with locked(path):
            runs, _ = _read(path)
            for key, value in updates.items():
                if not _valid(_kind_of(key), value):
                    continue
                if _kind_of(key) == ALPHAS:  # 4 decimals: a rate to 0.01%, and short to write
                    value = [round(a, 4) for a in value]
                runs[key] = _trim(key, runs.get(key, []) + [value])
            # no indent: json's C encoder (indent falls back to the pure-Python one, 40 ms)
            write_atomic(path, json.dumps({"format": FORMAT, "entries": runs},
                                          separators=(",", ":")))
            _keep(path, runs, 0)
        return True
    except OSError:
        return False
