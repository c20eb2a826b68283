"""Prometheus metrics, under a `specpair:` prefix. The speculative counters carry the names vLLM
and llama.cpp share (spec_decode_num_drafts, _num_draft_tokens, _num_accepted_tokens,
_num_accepted_tokens_per_pos{position}), so dashboards and `specpair bench --endpoint` read all
three engines alike. Counters are exposed with Prometheus' `_total` suffix, as vLLM's are."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

from ..core.stats import DecodeStats

PREFIX = "specpair:"
BATCH_COUNTERS = {
    "steps": "Batched evaluations that ran verification rounds",
    "slot_rounds": "Verification rounds, over all slots",
    "rows": "Rows evaluated in those steps (pending tokens, drafts, prompt chunks)",
    "offered": "Draft tokens the slots' drafters offered",
    "drafted": "Draft tokens evaluated (offers as the batch's goodput cut them)",
    "predicted_seconds": "Seconds the batch-cost curve predicted for those steps",
    "seconds": "Seconds those steps took"}


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()  # one per app: no global state
        r = self.registry
        self.drafts = Counter(f"{PREFIX}spec_decode_num_drafts",
                              "Verification rounds with at least one draft token", registry=r)
        self.draft_tokens = Counter(f"{PREFIX}spec_decode_num_draft_tokens",
                                    "Draft tokens proposed", registry=r)
        self.accepted = Counter(f"{PREFIX}spec_decode_num_accepted_tokens",
                                "Draft tokens accepted", registry=r)
        self.accepted_per_pos = Counter(f"{PREFIX}spec_decode_num_accepted_tokens_per_pos",
                                        "Draft tokens accepted at each draft position",
                                        ["position"], registry=r)
        self.requests = Counter(f"{PREFIX}requests", "Requests answered",
                                ["endpoint", "status"], registry=r)
        self.prompt_tokens = Counter(f"{PREFIX}prompt_tokens", "Prompt tokens", registry=r)
        self.prompt_tokens_reused = Counter(f"{PREFIX}prompt_tokens_reused",
                                            "Prompt tokens found in the KV cache", registry=r)
        self.generation_tokens = Counter(f"{PREFIX}generation_tokens", "Tokens generated",
                                         registry=r)
        self.waiting = Gauge(f"{PREFIX}num_requests_waiting", "Requests in the queue",
                             registry=r)
        self.running = Gauge(f"{PREFIX}num_requests_running", "Requests decoding (busy slots)",
                             registry=r)
        self.slots = Gauge(f"{PREFIX}num_slots", "Requests the server decodes at once "
                           "(--parallel)", registry=r)
        self.tokens_per_second = Histogram(
            f"{PREFIX}tokens_per_second", "Decoding speed of each request (steady state)",
            buckets=(1, 2, 5, 10, 15, 20, 30, 40, 60, 80, 120, 200, 400), registry=r)
        self.request_seconds = Histogram(
            f"{PREFIX}request_seconds", "Time from arrival to the last token",
            buckets=(0.1, 0.25, 0.5, 1, 2, 5, 10, 20, 40, 80, 160), registry=r)
        # the scheduler's steps (schedule/stats.py), as counters: folded in at each scrape
        self.batch = {name: Counter(f"{PREFIX}batch_{name}", help_, registry=r)
                      for name, help_ in BATCH_COUNTERS.items()}
        self._batch_seen: dict[str, float] = {}
        self.suffix = {name: Gauge(f"{PREFIX}suffix_tree_{name}", help_, registry=r)
                       for name, help_ in (
                           ("requests", "Earlier outputs held by the global suffix trees"),
                           ("tokens", "Tokens held by the global suffix trees"),
                           ("nodes", "Nodes of the global suffix trees"),
                           ("bytes", "Estimated memory of the global suffix trees"))}

    def record(self, stats: DecodeStats, reused: int) -> None:
        """Fold one finished generation in."""
        self.drafts.inc(stats.drafts)
        self.draft_tokens.inc(stats.drafted)
        self.accepted.inc(stats.accepted)
        for i, n in enumerate(stats.accepted_at):
            if n:
                self.accepted_per_pos.labels(position=str(i)).inc(n)
        self.prompt_tokens.inc(stats.prompt_tokens)
        self.prompt_tokens_reused.inc(reused)
        self.generation_tokens.inc(stats.new_tokens)
        if stats.new_tokens and stats.decode_seconds:
            self.tokens_per_second.observe(stats.tokens_per_second)

    def set_batch(self, stats: dict) -> None:
        """The scheduler's totals so far (BatchStats.to_dict)."""
        for name, counter in self.batch.items():
            value = float(stats.get(name, 0.0))
            counter.inc(max(0.0, value - self._batch_seen.get(name, 0.0)))
            self._batch_seen[name] = value

    def set_suffix(self, stats: dict) -> None:
        for name, gauge in self.suffix.items():
            gauge.set(stats.get(name, 0))

    def exposition(self) -> bytes:
        return generate_latest(self.registry)
