"""`specpair serve`: load the pair once, then serve until SIGTERM (the CLI side of serve/)."""

from __future__ import annotations

import argparse
import os
import sys

from ..errors import SpecpairError
from ..options import backend_config, sampling_config


def cmd_serve(args: argparse.Namespace) -> int:
    """`specpair serve`: load the pair once, then answer OpenAI-style requests until SIGTERM."""
    import ipaddress

    import uvicorn

    from ..backends import load_backend
    from ..check import check_pair
    from ..models import DEFAULT_DRAFT, MODELS, cached_path, resolve_model
    from ..pairing import describe
    from .app import ServeSettings, create_app
    from .engine import DraftModel, Engine

    sampling = sampling_config(args)
    config = backend_config(args)
    if args.max_queue < 0:
        raise SpecpairError(f"--max-queue must be >= 0, got {args.max_queue}")
    if args.max_tokens_cap < 1 or args.max_tokens > args.max_tokens_cap:
        raise SpecpairError("--max-tokens must be between 1 and --max-tokens-cap")
    spec = args.draft or "auto"
    draft_model = None
    if spec not in ("auto", "none", "ngram"):
        comparison = check_pair(args.target, spec)  # before any weights load
        note = describe(comparison, sampling)
        if note:
            print(f"specpair serve: {note}", file=sys.stderr)
        engine_name, path = resolve_model(spec)
        draft_model = DraftModel(os.path.basename(path), engine_name, path,
                                 os.path.getsize(path), lambda: load_backend(spec, config),
                                 comparison)
    elif spec == "auto":  # auto may load the default draft, if it can win here
        path = str(cached_path(MODELS[DEFAULT_DRAFT]))
        draft_model = DraftModel(
            os.path.basename(path), "gguf", path, MODELS[DEFAULT_DRAFT].size,
            lambda: load_backend(DEFAULT_DRAFT, config),
            check_pair(args.target, DEFAULT_DRAFT))
    target = load_backend(args.target, config)
    engine_name, _ = resolve_model(args.target)
    engine = Engine(target, engine=engine_name, config=config, max_queue=args.max_queue,
                    draft_model=draft_model, ngram=(args.ngram_min, args.ngram_max),
                    draft_p_min=args.draft_p_min)
    settings = ServeSettings(
        model=args.model_name or target.name,
        draft=spec if spec in ("auto", "none", "ngram") else "model",
        draft_tokens=args.draft_tokens, max_tokens_cap=args.max_tokens_cap,
        default_max_tokens=args.max_tokens, api_key=args.api_key, sampling=sampling,
        stop=tuple(args.stop))
    app = create_app(engine, settings)
    try:
        loopback = ipaddress.ip_address(args.host).is_loopback
    except ValueError:
        loopback = args.host == "localhost"
    if not loopback and not args.api_key:
        print(f"specpair: warning: listening on {args.host} without --api-key: anyone who can "
              "reach this port can use the model", file=sys.stderr)
    print(f"specpair: serving {target.name} (drafter {settings.draft}) on "
          f"http://{args.host}:{args.port}  (chat page: /, API: /v1, metrics: /metrics)",
          file=sys.stderr)
    server = uvicorn.Server(uvicorn.Config(app, host=args.host, port=args.port,
                                           log_level="warning",
                                           timeout_graceful_shutdown=args.shutdown_grace))
    _serve_until_signalled(server)
    engine.shutdown(cancel_after=args.shutdown_grace)  # cancels what is still decoding
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
