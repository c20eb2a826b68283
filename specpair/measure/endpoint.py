"""`specpair bench --endpoint URL`: the reference experiment against running OpenAI-compatible
servers (vLLM, llama-server, llama-cpp-python, specpair serve), with the statistics of
`specpair bench`.

Each run sends the next prompt of the suite to every endpoint in turn (interleaved, after a
warm-up), streaming, and times the first token, the gaps between chunks, and the whole request.
Server-side speculative counters come from three places, whichever a server has:
- `/metrics` (Prometheus), read before and after each request, for every known family:
  `vllm:spec_decode_*`, `llamacpp:spec_decode_*`, `specpair:spec_decode_*`;
- llama.cpp's per-response `timings` (`draft_n`, `draft_n_accepted`);
- specpair's per-response `speculative` object.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import httpx
import numpy as np

from ..core.sampling import SamplingConfig
from ..errors import EngineError, SpecpairError
from .benchstats import describe_speedup, speedup, summarize
from .suites import Prompt


class EndpointError(EngineError):
    """A request an endpoint failed (an HTTP error, or an error chunk mid-stream)."""

FAMILIES = ("vllm:", "llamacpp:", "specpair:")
DEFAULT_TIMEOUT = 300.0
LOAD_REQUESTS_PER_SLOT = 4  # a load point sends at least 4 x C requests
_LINE = re.compile(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{[^}]*\})?\s+([-+0-9.eEinfNa]+)')


@dataclass(frozen=True)
class Endpoint:
    url: str  # the base URL, without /v1
    label: str
    api_key: str | None = None
    model: str | None = None

    def headers(self) -> dict:
        return {"authorization": f"Bearer {self.api_key}"} if self.api_key else {}


def parse_metrics(text: str) -> dict[str, float]:
    """Prometheus text: {name{labels}: value} for the speculative families we know, and a
    specpair scheduler's batch counters."""
    out: dict[str, float] = {}
    for line in text.splitlines():
        if not line.startswith(FAMILIES):
            continue
        m = _LINE.match(line)
        if m and ("spec_decode" in m.group(1) or m.group(1).startswith("specpair:batch_")):
            try:
                out[m.group(1) + (m.group(2) or "")] = float(m.group(3))
            except ValueError:
                pass
    return out


def spec_counters(delta: dict[str, float]) -> dict:
    """drafts / draft tokens / accepted tokens / accepted per position, from counter deltas
    (any family; names with or without Prometheus' _total suffix)."""
    out: dict = {"drafts": 0.0, "draft_tokens": 0.0, "accepted": 0.0, "per_pos": {}}
    for key, value in delta.items():
        name = key.split("{")[0].split(":", 1)[1].removesuffix("_total")
        if name == "spec_decode_num_drafts":
            out["drafts"] += value
        elif name == "spec_decode_num_draft_tokens":
            out["draft_tokens"] += value
        elif name == "spec_decode_num_accepted_tokens":
            out["accepted"] += value
        elif name == "spec_decode_num_accepted_tokens_per_pos":
            pos = re.search(r'position="(\d+)"', key)
            if pos:
                i = int(pos.group(1))
                out["per_pos"][i] = out["per_pos"].get(i, 0.0) + value
    return out


def batch_counters(delta: dict[str, float]) -> dict | None:
    """What a specpair server's scheduler did over a load point (its `batch_*` counters): per
    verification round, the draft tokens offered, verified and accepted, and the batch cost
    its goodput rule predicted over what the steps took. None from other servers."""
    totals: dict[str, float] = {}
    for key, value in delta.items():
        name = key.split("{")[0].split(":", 1)[-1].removesuffix("_total")
        if name.startswith("batch_"):
            totals[name[len("batch_"):]] = totals.get(name[len("batch_"):], 0.0) + value
    rounds = totals.get("slot_rounds", 0.0)
    if not rounds:
        return None
    seconds = totals.get("seconds", 0.0)
    return {"rounds": rounds, "steps": totals.get("steps", 0.0),
            "rows_per_step": totals.get("rows", 0.0) / max(totals.get("steps", 0.0), 1.0),
            "offered_per_round": totals.get("offered", 0.0) / rounds,
            "k_per_round": totals.get("drafted", 0.0) / rounds,
            "cost_predicted_over_measured": (totals.get("predicted_seconds", 0.0) / seconds
                                             if seconds and totals.get("predicted_seconds")
                                             else None)}


@dataclass
class Result:
    """One request."""

    text: str = ""
    completion_tokens: int = 0
    seconds: float = 0.0
    ttft: float = 0.0
    gaps: list[float] = field(default_factory=list)
    drafted: float | None = None  # from whichever source the server offers
    accepted: float | None = None
    drafts: float | None = None
    per_pos: dict = field(default_factory=dict)
    source: str = ""  # where the speculative counters came from

    @property
    def tokens_per_second(self) -> float:
        return self.completion_tokens / self.seconds if self.seconds else 0.0

    def to_dict(self) -> dict:
        return {"completion_tokens": self.completion_tokens, "seconds": self.seconds,
                "ttft": self.ttft, "inter_chunk_mean": float(np.mean(self.gaps))
                if self.gaps else None, "tokens_per_second": self.tokens_per_second,
                "drafted": self.drafted, "accepted": self.accepted, "drafts": self.drafts,
                "source": self.source}


class Client:
    def __init__(self, endpoint: Endpoint, *, timeout: float) -> None:
        self.endpoint = endpoint
        self.http = httpx.Client(base_url=endpoint.url.rstrip("/"), timeout=timeout,
                                 headers=endpoint.headers())

    def metrics(self) -> dict[str, float] | None:
        try:
            r = self.http.get("/metrics")
        except httpx.HTTPError:
            return None
        return parse_metrics(r.text) if r.status_code == 200 else None

    def request(self, prompt: Prompt, *, max_tokens: int, sampling: SamplingConfig,
                seed: int) -> Result:
        body: dict = {"max_tokens": max_tokens, "temperature": sampling.temperature,
                      "top_p": sampling.top_p, "stream": True, "seed": seed,
                      "stream_options": {"include_usage": True}}
        if sampling.top_k:
            body["top_k"] = sampling.top_k
        if sampling.min_p:
            body["min_p"] = sampling.min_p
        if self.endpoint.model:
            body["model"] = self.endpoint.model
        if prompt.chat:
            messages = prompt.text if isinstance(prompt.text, list) else [
                {"role": "user", "content": prompt.text}]
            path, body["messages"] = "/v1/chat/completions", messages
        else:
            path, body["prompt"] = "/v1/completions", prompt.text
        before = self.metrics()
        result = Result()
        t0 = time.perf_counter()
        last = None
        pieces = []
        try:
            with self.http.stream("POST", path, json=body) as r:
                if r.status_code != 200:
                    raise EndpointError(f"{self.endpoint.label}: HTTP {r.status_code}: "
                                        f"{r.read().decode(errors='replace')[:200]}")
                for line in r.iter_lines():
                    if not line.startswith("data:"):
                        continue
                    data = line[5:].strip()
                    if data == "[DONE]":
                        break
                    chunk = json.loads(data)
                    if isinstance(chunk, dict) and "error" in chunk:
                        # a stream that ends in an error is a failed request, not a short one
                        err = chunk["error"]
                        message = err.get("message") if isinstance(err, dict) else err
                        raise EndpointError(f"{self.endpoint.label}: error mid-stream: "
                                            f"{message}")
                    text = _chunk_text(chunk)
                    now = time.perf_counter()
                    if text:
                        if last is None:
                            result.ttft = now - t0
                        else:
                            result.gaps.append(now - last)
                        last = now
                        pieces.append(text)
                    _read_extras(chunk, result)
        except httpx.HTTPError as e:
            raise EndpointError(f"{self.endpoint.label} ({self.endpoint.url}): {e}") from None
        result.seconds = time.perf_counter() - t0
        result.text = "".join(pieces)
        if not result.completion_tokens:
            result.completion_tokens = len(pieces)  # no usage: count chunks
        after = self.metrics() if before is not None else None
        if after is not None and result.drafted is None:
            delta = {k: after.get(k, 0.0) - before.get(k, 0.0) for k in after}
            c = spec_counters(delta)
            if c["draft_tokens"] or c["drafts"]:
                result.drafted, result.accepted = c["draft_tokens"], c["accepted"]
                result.drafts, result.per_pos = c["drafts"], c["per_pos"]
                result.source = "/metrics"
        return result


def _chunk_text(chunk: dict) -> str:
    choices = chunk.get("choices") or []
    if not choices:
        return ""
    c = choices[0]
    return (c.get("delta") or {}).get("content") or c.get("text") or ""


def _read_extras(chunk: dict, result: Result) -> None:
    usage = chunk.get("usage")
    if usage and usage.get("completion_tokens"):
        result.completion_tokens = int(usage["completion_tokens"])
    spec = chunk.get("speculative")
    if spec:  # specpair serve
        result.drafted, result.accepted = spec.get("drafted"), spec.get("accepted")
        result.drafts = spec.get("drafts")
        drafts = spec.get("drafts") or 0
        result.per_pos = {i: a * drafts for i, a in
                          enumerate(spec.get("acceptance_by_position") or [])}
        result.source = "speculative"
    timings = chunk.get("timings")
    if timings and "draft_n" in timings and result.source != "speculative":  # llama.cpp
        result.drafted = timings.get("draft_n")
        result.accepted = timings.get("draft_n_accepted")
        result.source = "timings"


def run(endpoints: Sequence[Endpoint], prompts: Sequence[Prompt], *, runs: int,
        max_tokens: int, sampling: SamplingConfig, timeout: float = DEFAULT_TIMEOUT,
        concurrency: Sequence[int] = (1,), per_point: int = LOAD_REQUESTS_PER_SLOT,
        advance: Callable[[int], None] = lambda n: None) -> dict:
    """Interleaved runs over every endpoint (the first is the reference); then, for each
    concurrency C asked beyond a lone 1, a closed loop per endpoint: exactly C requests in
    flight, `per_point` x C requests in all, endpoints interleaved point by point."""
    if not endpoints:
        raise SpecpairError("give at least one --endpoint URL")
    clients = [Client(e, timeout=timeout) for e in endpoints]
    seed = sampling.seed or 0
    for c in clients:  # warm-up: load, caches, JIT; not measured
        c.request(prompts[0], max_tokens=8, sampling=sampling, seed=seed)
    rows: dict[str, list[dict]] = {e.label: [] for e in endpoints}
    texts: dict[str, list[str]] = {e.label: [] for e in endpoints}
    load: dict[str, dict[int, dict]] = {e.label: {} for e in endpoints}
    for r in range(runs):
        prompt = prompts[r % len(prompts)]
        for c in clients:
            res = c.request(prompt, max_tokens=max_tokens, sampling=sampling, seed=seed + r)
            rows[c.endpoint.label].append({"run": r, **res.to_dict(), "per_pos": res.per_pos,
                                           "category": prompt.category})
            texts[c.endpoint.label].append(res.text)
            advance(res.completion_tokens)
    points = list(concurrency) if list(concurrency) != [1] else []
    for n, level in enumerate(points):
        # endpoints take turns going first, so neither always runs on a warmer machine
        for c in clients[n % len(clients):] + clients[:n % len(clients)]:
            load[c.endpoint.label][level] = _load_test(c, prompts, level, max_tokens,
                                                       sampling, seed, per_point, advance)
    return _report(endpoints, rows, texts, {k: v for k, v in load.items() if v}, runs=runs,
                   max_tokens=max_tokens, sampling=sampling, concurrency=points, seed=seed)


def _load_test(client: Client, prompts, concurrency: int, max_tokens: int,
               sampling: SamplingConfig, seed: int, per_point: int,
               advance: Callable[[int], None] = lambda n: None) -> dict:
    """A closed loop: `concurrency` requests in flight at every moment (a new one as soon as
    one ends), per_point x concurrency requests: aggregate throughput, latency, time to first
    token, and the server's drafted and accepted tokens (its /metrics, before and after)."""
    jobs = [prompts[i % len(prompts)] for i in range(concurrency * per_point)]
    results, errors = [], 0
    before = client.metrics()
    t0 = time.perf_counter()

    def one(i_p):
        i, p = i_p
        return client.request(p, max_tokens=max_tokens, sampling=sampling, seed=seed + i)

    with ThreadPoolExecutor(concurrency) as pool:
        for fut in [pool.submit(one, ip) for ip in enumerate(jobs)]:
            try:
                res = fut.result()
                results.append(res)
                advance(res.completion_tokens)
            except SpecpairError:
                errors += 1
    wall = time.perf_counter() - t0
    after = client.metrics()
    lat = [r.seconds for r in results]
    ttft = [r.ttft for r in results if r.ttft is not None]
    out = {"concurrency": concurrency, "requests": len(jobs), "ok": len(results),
           "errors": errors, "seconds": wall,
           "tokens_per_second": sum(r.completion_tokens for r in results) / wall,
           "p50": float(np.percentile(lat, 50)) if lat else None,
           "p99": float(np.percentile(lat, 99)) if lat else None,
           "ttft_p50": float(np.percentile(ttft, 50)) if ttft else None,
           "drafted": None, "accepted": None}
    if before is not None and after is not None:
        delta = {k: after[k] - before.get(k, 0.0) for k in after}
        counts = spec_counters(delta)
        out["drafted"], out["accepted"] = counts["draft_tokens"], counts["accepted"]
        out["batch"] = batch_counters(delta)
        if out["batch"] is not None:
            out["batch"]["accepted_per_round"] = counts["accepted"] / out["batch"]["rounds"]
    elif results and all(r.drafted is not None for r in results):
        out["drafted"] = sum(r.drafted or 0 for r in results)
        out["accepted"] = sum(r.accepted or 0 for r in results)
    return out


def _report(endpoints, rows, texts, load, *, runs, max_tokens, sampling, concurrency,
            seed) -> dict:
    ref = endpoints[0].label
    modes = []
    for e in endpoints:
        rs = rows[e.label]
        tps = [r["tokens_per_second"] for r in rs]
        entry = {"label": e.label, "url": e.url,
                 "tokens_per_second": summarize(tps).to_dict(),
                 "ttft": summarize([r["ttft"] for r in rs]).to_dict(),
                 "inter_chunk": summarize([r["inter_chunk_mean"] for r in rs
                                           if r["inter_chunk_mean"] is not None]).to_dict(),
                 "runs": rs}
        drafted = [r["drafted"] for r in rs if r["drafted"] is not None]
        if drafted:
            accepted = sum(r["accepted"] or 0 for r in rs)
            drafts = sum(r["drafts"] or 0 for r in rs)
            per_pos: dict[int, float] = {}
            for r in rs:
                for i, v in (r["per_pos"] or {}).items():
                    per_pos[int(i)] = per_pos.get(int(i), 0.0) + v
            entry["speculative"] = {
                "source": rs[-1]["source"], "drafted": sum(drafted), "accepted": accepted,
                "acceptance_rate": accepted / sum(drafted) if sum(drafted) else 0.0,
                "mean_acceptance_length": 1 + accepted / drafts if drafts else None,
                "acceptance_by_position": [per_pos[i] / drafts for i in sorted(per_pos)]
                if drafts and per_pos else None}
        if e.label != ref:
            s = speedup([r["tokens_per_second"] for r in rows[ref]], tps, seed=seed)
            entry["speedup"] = s.to_dict()
            entry["verdict"] = describe_speedup(s, what=f"{e.label}").replace(
                "as fast as plain", f"as fast as {ref}")
            if sampling.greedy:
                same = sum(a == b for a, b in zip(texts[ref], texts[e.label]))
                entry["agreement"] = {"identical": same, "runs": runs}
        if e.label in load:
            entry["load"] = load[e.label]
        modes.append(entry)
    return {"endpoints": modes, "runs": runs, "max_tokens": max_tokens,
            "concurrency": concurrency, "greedy": sampling.greedy,
            "verdict": [m["verdict"] for m in modes if "verdict" in m]}


def print_report(report: dict, console) -> None:
    from rich.table import Table

    table = Table("", *(m["label"] for m in report["endpoints"]),
                  title=f"{report['runs']} runs, up to {report['max_tokens']} tokens, "
                        f"{'greedy' if report['greedy'] else 'sampled'}")

    def cell(m, key):
        s = m[key]
        return f"{s['mean']:.3f}" if s["n"] else "-"

    table.add_row("tokens/s (mean)", *(f"{m['tokens_per_second']['mean']:.2f}"
                                        for m in report["endpoints"]))
    table.add_row("speedup [95% CI]", *(
        "reference" if "speedup" not in m else
        f"{m['speedup']['ratio']:.2f}x [{m['speedup']['ci95'][0]:.2f}, "
        f"{m['speedup']['ci95'][1]:.2f}]" for m in report["endpoints"]))
    table.add_row("time to first token s", *(cell(m, "ttft") for m in report["endpoints"]))
    table.add_row("inter-chunk s", *(cell(m, "inter_chunk") for m in report["endpoints"]))
    table.add_row("acceptance (source)", *(
        f"{m['speculative']['acceptance_rate']:.1%} ({m['speculative']['source']})"
        if "speculative" in m else "-" for m in report["endpoints"]))
    table.add_row("by position", *(
        " ".join(f"{a:.2f}" for a in (m["speculative"]["acceptance_by_position"] or []))
        if "speculative" in m and m["speculative"]["acceptance_by_position"] else "-"
        for m in report["endpoints"]))
    table.add_row("outputs vs reference", *(
        f"{m['agreement']['identical']}/{m['agreement']['runs']} identical"
        if "agreement" in m else "-" for m in report["endpoints"]))
    for level in report["concurrency"]:
        def point(m, level=level):
            p = (m.get("load") or {}).get(level)
            if not p or p["p50"] is None:
                return "-"
            spec = (f", {p['accepted']:.0f}/{p['drafted']:.0f} accepted" if p["drafted"]
                    else "")
            if b := p.get("batch"):  # a specpair scheduler's own account of its rounds
                spec += (f"; a round: K {b['k_per_round']:.2f} of {b['offered_per_round']:.1f}"
                         f" offered, {b['accepted_per_round']:.2f} accepted")
                if ratio := b["cost_predicted_over_measured"]:
                    spec += f"; batch cost predicted/measured {ratio:.2f}"
            return (f"{p['tokens_per_second']:.1f} tok/s, p50/p99 {p['p50']:.1f}/"
                    f"{p['p99']:.1f} s, ttft {p['ttft_p50']:.2f} s{spec}")
        table.add_row(f"{level} in flight", *(point(m) for m in report["endpoints"]))
    console.print(table)
    for line in report["verdict"]:
        console.print(f"[bold]{line}[/bold]", soft_wrap=True)
