"""Measuring pairs and this machine: everything behind bench, advise, steer, exactness and
overhead. Built on the library (specpair.load), never the other way round.

bench.py       plain vs speculative decoding, side by side, paired per request
endpoint.py    the same against running OpenAI-compatible servers (specpair, llama-server, vLLM)
benchstats.py  paired ratios, bootstrap intervals, tests: pure functions
agreement.py   do two greedy outputs agree, up to a numerical near-tie of the target
report.py      a report rendered for the terminal, Markdown or a PNG
suites.py      prompt suites: built in, Spec-Bench, JSONL files
advise.py      this machine's costs and each drafter's acceptance, and the recommendation
steer.py       can a draft steer its target's sampled output (the study as a command)
exactness.py   how far batched evaluation moves the sampling distribution here
overhead.py    the decode loop's own cost per round, against a null backend
"""
