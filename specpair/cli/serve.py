"""`specpair serve`: load the pair once, then serve until SIGTERM (the CLI side of serve/)."""

from __future__ import annotations

import argparse
import sys

from ..errors import InvalidOption
from .common import add_model_options, add_sampling_options, call_options, load_kwargs, say

# slots when --parallel is not given: llama-server's `-np auto` (4, one unified KV cache); one
# user alone decodes as fast as with 1 (0.99x [0.98, 1.00] on a 2-vCPU Xeon, MEASUREMENTS.md)
DEFAULT_PARALLEL = 4


def add(sub) -> None:
    from ..auto.planner import AUTO_MAX_K
    from ..core.decode import DEFAULT_DRAFT_TOKENS, DEFAULT_MAX_TOKENS

    serve = sub.add_parser(
        "serve", help="an OpenAI-compatible server with speculative decoding, metrics and a "
                      "chat page",
        description="Serve the target through OpenAI's chat and completions APIs (streaming "
                    "and not), with speculative statistics in every response, Prometheus "
                    "metrics at /metrics and a chat page at / that shows which tokens came "
                    "from the draft. Up to --parallel requests decode at once, in one "
                    "batch per step; others wait in a bounded FIFO queue (429 when full). "
                    "Generation options set the server's defaults; requests override them.")
    add_model_options(serve, draft_default="auto")
    serve.add_argument("--draft-tokens", "-k", type=int, default=None, metavar="K",
                       help=f"draft length (default {DEFAULT_DRAFT_TOKENS}; auto: the largest "
                            f"K, default {AUTO_MAX_K}); requests may set speculative.k")
    serve.add_argument("--parallel", "-np", type=int, default=None, metavar="N",
                       help=f"requests decoded at once, their rounds in one batch per step "
                            f"(default {DEFAULT_PARALLEL} on llama.cpp, as llama-server's; 1 "
                            f"with a named model draft or on transformers). Each slot has its "
                            f"own --n-ctx tokens of KV cache, so memory grows by one context "
                            f"per slot; on a 2-core CPU a batch of 4 rows costs about 1.6-2.8 "
                            f"single steps, so 4 slots give up to about 2x the throughput of "
                            f"one, and one user alone is as fast as with 1. Drafts are lookups "
                            f"(auto, suffix, ngram) or none: a model draft needs --parallel 1, "
                            f"and auto considers one only there")
    serve.add_argument("--max-tokens", "-n", type=int, default=None, metavar="N",
                       help=f"new tokens when a request does not say (default "
                            f"{DEFAULT_MAX_TOKENS}, or --max-tokens-cap if lower)")
    serve.add_argument("--max-tokens-cap", type=int, default=4096, metavar="N",
                       help="the most new tokens a request may ask for (default 4096)")
    serve.add_argument("--stop", action="append", default=[], metavar="TEXT",
                       help="default stop strings (requests may give their own)")
    add_sampling_options(serve)
    serve.add_argument("--host", default="127.0.0.1",
                       help="address to listen on (default 127.0.0.1: this machine only)")
    serve.add_argument("--port", type=int, default=8080, help="port (default 8080)")
    serve.add_argument("--api-key", action="append", default=[], metavar="KEY",
                       help="require 'Authorization: Bearer KEY' on /v1 and /metrics "
                            "(repeatable: several keys, each its own suffix-tree partition)")
    serve.add_argument("--suffix-cache", choices=["off", "key", "global"], default="key",
                       help="the suffix lookup's tree of earlier outputs: per API key (default: "
                            "how fast a request is answered could otherwise tell one client "
                            "whether another's outputs contained a text), shared by all "
                            "(global), or none (off: each request drafts from itself only)")
    serve.add_argument("--max-queue", type=int, default=16, metavar="N",
                       help="requests that may wait while one decodes (default 16; 0: none "
                            "wait, one runs); more get 429 with Retry-After")
    serve.add_argument("--model-name", default=None, metavar="NAME",
                       help="the model id /v1/models reports (default: the target's file name)")
    serve.add_argument("--shutdown-grace", type=float, default=10.0, metavar="S",
                       help="on SIGTERM, let in-flight work finish for up to S seconds, then "
                            "cancel it (default 10)")

    serve.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    """Load the pair once, then answer OpenAI-style requests until SIGTERM."""
    import ipaddress
    import logging

    from ..extras import require_extra

    require_extra("serve", "specpair serve")
    import uvicorn

    from .. import load
    from ..core.decode import DEFAULT_MAX_TOKENS
    from ..models.resolve import resolve_model
    from ..pair import LOOKUPS
    from ..serve.app import ServeSettings, create_app
    from ..serve.engine import Engine

    spec = args.draft or "auto"
    if args.parallel is not None and args.parallel < 1:
        raise InvalidOption(f"--parallel must be >= 1, got {args.parallel}")
    if (args.parallel or 1) > 1 and spec not in LOOKUPS:
        raise InvalidOption("a model draft decodes one request at a time: with --parallel "
                            f"{args.parallel} draft with auto, suffix, ngram or none, or pass "
                            "--parallel 1")
    if args.max_queue < 0:
        raise InvalidOption(f"--max-queue must be >= 0, got {args.max_queue}")
    if args.max_tokens_cap < 1:
        raise InvalidOption(f"--max-tokens-cap must be >= 1, got {args.max_tokens_cap}")
    if args.max_tokens is None:
        args.max_tokens = min(DEFAULT_MAX_TOKENS, args.max_tokens_cap)
    if not 1 <= args.max_tokens <= args.max_tokens_cap:
        raise InvalidOption(f"--max-tokens must be between 1 and --max-tokens-cap "
                            f"({args.max_tokens_cap}), got {args.max_tokens}")
    if args.parallel is None:  # llama-server's -np auto: 4 slots, where they can be had
        engine, _ = resolve_model(args.target)
        args.parallel = DEFAULT_PARALLEL if spec in LOOKUPS and engine == "gguf" else 1
    logging.basicConfig(level=logging.WARNING, format="specpair serve: %(message)s")
    defaults = call_options(args, suffix_cache=args.suffix_cache)
    pair = load(args.target, **load_kwargs(args),  # a model draft is checked here
                parallel=args.parallel)
    pair.resolve(defaults)  # the server's own defaults must make a valid call
    target = pair.target
    for note in pair.resolver.notes:
        say(note)
    engine = Engine(pair, max_queue=args.max_queue)
    settings = ServeSettings(
        model=args.model_name or target.name, drafter=spec if spec in LOOKUPS else "model",
        max_tokens_cap=args.max_tokens_cap, api_keys=tuple(args.api_key), defaults=defaults)
    app = create_app(engine, settings)
    try:
        loopback = ipaddress.ip_address(args.host).is_loopback
    except ValueError:
        loopback = args.host == "localhost"
    if not loopback and not args.api_key:
        say(f"warning: listening on {args.host} without --api-key: anyone who can reach this "
            "port can use the model")
    slots = f", {engine.slots} slots of {target.n_ctx} tokens" if engine.slots > 1 else ""
    say(f"serving {target.name} on {target.device} (drafter {settings.drafter}{slots}) on "
        f"http://{args.host}:{args.port}  (chat page: /, API: /v1, metrics: /metrics)")
    server = uvicorn.Server(uvicorn.Config(app, host=args.host, port=args.port,
                                           log_level="warning",
                                           timeout_graceful_shutdown=args.shutdown_grace))
    _serve_until_signalled(server)  # the app's lifespan cancels what is still decoding
    pair.close()
    print("specpair: stopped", file=sys.stderr)
    return 0


def _serve_until_signalled(server) -> None:
    """Run uvicorn; SIGTERM or SIGINT stop it gracefully (no new connections, in-flight
    requests get --shutdown-grace seconds). uvicorn's own handlers re-raise the signal after
    shutting down, which would end the process with -15 instead of 0: ours do not."""
    import contextlib
    import signal

    def stop(signum, frame) -> None:
        server.should_exit = True

    server.capture_signals = contextlib.nullcontext  # keep uvicorn from installing its own
    previous = {s: signal.signal(s, stop) for s in (signal.SIGTERM, signal.SIGINT)}
    try:
        server.run()
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)
