"""This machine's batch curve for several users at once: the cost of one step that decodes N
sequences one row each (one llama_decode, what `serve --parallel N` runs when no slot drafts),
in single steps, and the aggregate gain N / cost(N), for N = 1, 2, 4, 8 (the 1.5B target,
each sequence after its own 64-token prompt). Prints JSON; run it on an idle machine."""

import json
import sys
import time

import numpy as np

from specpair.backends import BackendConfig, EvalPart
from specpair.backends.device import machine_id
from specpair.backends.llamacpp import LlamaCppBackend
from specpair.models import resolve_model

STEPS = 32
levels = [int(a) for a in sys.argv[1:]] or [1, 2, 4, 8]
path = resolve_model("qwen2.5-coder-1.5b")[1]
engine = LlamaCppBackend(path, BackendConfig(n_ctx=512, threads=2, n_seq=max(levels)))
rng = np.random.default_rng(0)
seconds = {}
for n in levels:
    for seq in range(max(levels)):
        engine.rewind_seq(seq, 0)
    engine.eval_many([EvalPart(s, rng.integers(100, 20000, 64).tolist(), False)
                      for s in range(n)])
    times = []
    for _ in range(STEPS):
        t0 = time.perf_counter()
        engine.eval_many([EvalPart(s, [int(rng.integers(100, 20000))]) for s in range(n)])
        times.append(time.perf_counter() - t0)
    seconds[n] = float(np.median(times))
engine.close()
base = seconds[levels[0]] / levels[0] if levels[0] == 1 else seconds[1]
curve = {n: {"step_seconds": s, "cost": s / base, "aggregate_gain": n / (s / base)}
         for n, s in seconds.items()}
print(json.dumps({"machine": machine_id(), "steps": STEPS, "curve": curve}, indent=1))
