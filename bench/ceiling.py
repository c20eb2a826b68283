"""This machine's verify curve for the ceiling a free drafter can reach: cost(k) in single
steps and k / cost(k) for batches of k = 2..64 (the 1.5B target, the edit suite's first
prompt). Prints JSON; bench/run_anchors.sh runs it first, on an idle machine."""

import json

import specpair
from specpair.backends.device import machine_id
from specpair.core.prompt import encode_prompt
from specpair.measure.bench import measure_ceiling
from specpair.measure.suites import load_suite

with specpair.load("qwen2.5-coder-1.5b", draft="none", threads=2) as pair:
    first = load_suite("edit")[0]
    prompt = encode_prompt(pair.target, first.text, chat=first.chat)
    ceiling = measure_ceiling(pair.target, prompt, (2, 4, 8, 16, 32, 64))
print(json.dumps({"machine": machine_id(), "ceiling": ceiling}, indent=1))
