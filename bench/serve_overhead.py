"""The server's overhead against in-process generation, and prefix reuse on a second chat turn.

    python bench/serve_overhead.py [--target MODEL] [--runs 5] [-n 128]

One backend; alternately (a) `Pair.generate` in this process and (b) the same greedy request
through `specpair serve`'s HTTP API on loopback (non-streaming), both with plain decoding, the
prompt already cached for both. Prints each pair's tokens/s and the geometric mean of the
ratios; then a two-turn chat and the prompt tokens its second turn reused.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import httpx
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import specpair  # noqa: E402
from specpair.models import DEFAULT_TARGET  # noqa: E402
from specpair.serve.app import ServeSettings, create_app  # noqa: E402
from specpair.serve.engine import Engine  # noqa: E402
from tests.serving import running  # noqa: E402

PROMPT = "Write a short story about a lighthouse keeper who finds a message in a bottle."


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--target", default=DEFAULT_TARGET)
    p.add_argument("--runs", type=int, default=5)
    p.add_argument("-n", type=int, default=128)
    args = p.parse_args()
    pair = specpair.load(args.target, draft="none", n_ctx=4096)
    engine = Engine(pair, max_queue=2)
    app = create_app(engine, ServeSettings(model="m", drafter="none"))
    ratios = []
    with running(app) as url:
        http = httpx.Client(base_url=url, timeout=600)
        body = {"messages": [{"role": "user", "content": PROMPT}], "max_tokens": args.n,
                "temperature": 0}
        http.post("/v1/chat/completions", json=body | {"max_tokens": 8})  # warm-up
        for run in range(args.runs):
            t0 = time.perf_counter()
            gen = pair.generate(PROMPT, chat=True, max_tokens=args.n, temperature=0)
            text = gen.text
            direct = gen.stats.new_tokens / (time.perf_counter() - t0)
            t0 = time.perf_counter()
            r = http.post("/v1/chat/completions", json=body).json()
            served = r["usage"]["completion_tokens"] / (time.perf_counter() - t0)
            same = r["choices"][0]["message"]["content"] == text
            ratios.append(served / direct)
            print(f"run {run}: generate {direct:.2f} tok/s, server {served:.2f} tok/s, "
                  f"ratio {served / direct:.3f}, same text: {same}")
        print(f"server / generate, geometric mean of {args.runs}: "
              f"{float(np.exp(np.mean(np.log(ratios)))):.3f}")
        first = http.post("/v1/chat/completions", json=body | {"max_tokens": 64}).json()
        turn2 = body | {"max_tokens": 16, "messages": body["messages"] + [
            {"role": "assistant", "content": first["choices"][0]["message"]["content"]},
            {"role": "user", "content": "Give the story a title."}]}
        second = http.post("/v1/chat/completions", json=turn2).json()
        print(f"second turn: {second['usage']['prompt_tokens']} prompt tokens, "
              f"{second['speculative']['prompt_tokens_reused']} reused from the first turn's "
              f"cache ({first['usage']['prompt_tokens']} prompt + "
              f"{first['usage']['completion_tokens']} generated there)")
    engine.shutdown(cancel_after=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
