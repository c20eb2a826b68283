"""Which machine and device a model runs on: for reports, and for the keys of measured costs
(a cost measured on one CPU or GPU says nothing about another)."""

from __future__ import annotations

import os
import platform
from functools import cache
from pathlib import Path


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


@cache
def cpu_name() -> str:
    """The CPU's model name (/proc/cpuinfo on Linux, the platform's word elsewhere)."""
    name = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return name


def machine_id() -> str:
    """CPU model and usable CPUs: the host part of every cost key and report."""
    return f"{cpu_name()} x{usable_cpus()}"


def cpu_device() -> str:
    """The device name of a model that runs on the CPU."""
    return f"CPU ({cpu_name()})"
