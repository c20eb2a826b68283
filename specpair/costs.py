"""What things cost on this machine: measured once, kept in the cache directory, then known.

Two kinds of cost decide whether speculation pays (see advise.py for the formula):
- the target's verify curve: seconds to evaluate a batch of n tokens, n = 1..17;
- each model drafter's seconds per proposed token (an n-gram lookup costs ~0).

Both are keyed by everything that changes them: the model file, the engine, device, dtype,
threads, context size, this machine and the specpair version (`cost_key`). `specpair advise`
measures the whole curve; `--draft auto` learns the points it uses while decoding (`CostCurve`)
and stores them, so no decode ever stops to measure.
"""

from __future__ import annotations

import json
import os
import platform
from collections.abc import Sequence
from pathlib import Path

from . import __version__

CURVE_POINTS = 17  # batches of 1..17 tokens: K up to 16


def usable_cpus() -> int:
    """The CPUs this process may run on: its affinity mask, capped by a cgroup CPU quota
    (containers), not os.cpu_count(), which counts the host's."""
    try:
        n = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        n = os.cpu_count() or 1
    try:  # cgroup v2: "max 100000" or "200000 100000" (quota, period)
        quota, period = Path("/sys/fs/cgroup/cpu.max").read_text().split()[:2]
        if quota != "max":
            n = min(n, max(1, int(int(quota) // int(period))))
    except (OSError, ValueError):
        pass
    return max(1, n)


def machine_id() -> str:
    """CPU model and usable CPUs: costs measured on one machine do not carry to another."""
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{cpu} x{usable_cpus()}"


def model_id(path: str, name: str) -> str:
    """A model file by name and size (a re-quantized file of the same name differs in size)."""
    try:
        return f"{name}:{os.path.getsize(path)}"
    except OSError:
        return name


def cost_key(kind: str, engine: str, path: str, engine_config) -> str:
    """The cache key of one measured cost: `kind` ("verify", "draft"), the model measured (its
    engine and file) and its BackendConfig (device, dtype, threads, n_ctx)."""
    c = engine_config
    return "|".join(str(p) for p in (
        __version__, machine_id(), kind, engine, model_id(path, Path(path).name),
        f"device={c.device}", f"dtype={c.dtype}", f"threads={c.threads or usable_cpus()}",
        f"n_ctx={c.n_ctx}"))


def cache_file() -> Path:
    from .models import cache_dir

    return cache_dir() / "costs.json"


def load() -> dict:
    try:
        data = json.loads(cache_file().read_text())
        return data if isinstance(data, dict) else {}
    except (OSError, ValueError):
        return {}


def save(updates: dict) -> bool:
    """Merge `updates` into the cache file, atomically (a concurrent reader sees the old or the
    new file). Returns False when it cannot be written: that only costs a re-measurement."""
    path = cache_file()
    try:
        data = load() | updates
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        tmp.write_text(json.dumps(data, indent=1))
        os.replace(tmp, path)
        return True
    except OSError:
        return False


# Without a measurement of batch size n, assume it costs this many single steps. The shape of
# the 2-core CPU curves in docs/MEASUREMENTS.md (1.6x at 2, 3.0x at 5, 6.5x at 9), which is
# pessimistic for GPUs: there the first rounds measure the real, flatter curve.
def prior_ratio(n: int) -> float:
    return 1.0 + 0.5 * (n - 1)


MONOTONE_SLACK = 0.9


class CostCurve:
    """The target's verify cost per batch size, learned online.

    Starts from a stored curve (or the prior ratios, scaled by the first single-token timing)
    and moves each point toward what decode rounds measure: an exponential average whose weight
    is 1/count at first (a plain mean) and never below MIN_WEIGHT (it follows drift)."""

    MIN_WEIGHT = 0.1

    def __init__(self, stored: Sequence[float | None] | None = None, *,
                 points: int = CURVE_POINTS) -> None:
        self.points = points
        self.seconds: list[float | None] = [None] * points
        self.counts = [0] * points
        for i, s in enumerate((stored or [])[:points]):
            if isinstance(s, (int, float)) and s > 0:
                self.seconds[i] = float(s)
        self.stored = self.seconds[0] is not None

    def observe(self, n: int, seconds: float) -> None:
        if not 1 <= n <= self.points or seconds <= 0:
            return
        i = n - 1
        self.counts[i] += 1
        old = self.seconds[i]
        if old is None or (self.counts[i] == 1 and not self.stored):
            self.seconds[i] = seconds
        else:
            w = max(1.0 / self.counts[i], self.MIN_WEIGHT) if not self.stored else self.MIN_WEIGHT
            self.seconds[i] = old + w * (seconds - old)

    @property
    def known(self) -> bool:
        return self.seconds[0] is not None

    def estimate(self) -> tuple[float, ...]:
        """Seconds for batches of 1..points; unmeasured points follow the prior's shape from the
        nearest measured point below them. A batch is taken to cost at least MONOTONE_SLACK of
        any smaller batch: timings on a busy 2-core machine are noisy, and a batch of 4 that
        once measured cheaper than a batch of 3 must not talk auto into drafting. (Real dips,
        like llama.cpp's 16 against 12, are smaller than that slack.)"""
        if self.seconds[0] is None:
            return tuple(prior_ratio(n) for n in range(1, self.points + 1))  # in units of one
        out: list[float] = []
        anchor_n, anchor_s = 1, self.seconds[0]
        for i, s in enumerate(self.seconds):
            n = i + 1
            if s is not None:
                anchor_n, anchor_s = n, s
                value = s
            else:
                value = anchor_s * prior_ratio(n) / prior_ratio(anchor_n)
            out.append(max(value, MONOTONE_SLACK * max(out, default=0.0)))
        return tuple(out)

    def measured(self) -> dict[int, float]:
        return {i + 1: s for i, s in enumerate(self.seconds) if s is not None}
