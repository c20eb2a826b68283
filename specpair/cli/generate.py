"""`specpair generate`: stream the target's text to stdout, one summary line to stderr."""

from __future__ import annotations

import argparse
import json
import sys

from ..errors import EXIT_INTERRUPTED, SpecpairError
from .common import (
    add_acceptance_options,
    add_model_options,
    add_sampling_options,
    call_options,
    load_kwargs,
    say,
)


def add(sub) -> None:
    from ..auto.planner import AUTO_MAX_K
    from ..core.decode import DEFAULT_DRAFT_TOKENS, DEFAULT_MAX_TOKENS

    gen = sub.add_parser(
        "generate", help="generate text, streaming it as it is produced",
        description="Stream the target's continuation of PROMPT to stdout; a one-line summary "
                    "(tokens/s, drafted, accepted) goes to stderr. The default drafter, auto, "
                    "drafts only where it pays on this machine.")
    gen.add_argument("prompt", metavar="PROMPT", help="the prompt text, or - to read stdin")
    add_model_options(gen, draft_default="auto")
    gen.add_argument("--draft-tokens", "-k", type=int, default=None, metavar="K",
                     help=f"tokens the draft proposes per step (default {DEFAULT_DRAFT_TOKENS}; "
                          f"with auto or --adaptive: the largest K to choose, default "
                          f"{AUTO_MAX_K})")
    gen.add_argument("--max-tokens", "-n", type=int, default=DEFAULT_MAX_TOKENS, metavar="N",
                     help=f"stop after N new tokens (default {DEFAULT_MAX_TOKENS})")
    gen.add_argument("--stop", action="append", default=[], metavar="TEXT",
                     help="stop when TEXT appears (repeatable); EOS always stops")
    add_sampling_options(gen)
    add_acceptance_options(gen)
    gen.add_argument("--draft-system", default=None, metavar="TEXT",
                     help="with --chat and a model draft: the draft alone sees this system "
                          "prompt (the target sees the conversation unchanged). Under exact "
                          "verification it changes speed only; see `specpair steer`")
    gen.add_argument("--chat", action="store_true",
                     help="wrap PROMPT in the target's own chat template (instruct models)")
    gen.add_argument("--suffix-store", default=None, metavar="PATH",
                     help="keep the suffix lookup's global tree in PATH across runs (agents "
                          "that call specpair repeatedly draft from their earlier outputs); "
                          "safe with concurrent writers")
    gen.add_argument("--json", action="store_true",
                     help='print one JSON object {"text", "tokens", "stats", "exact", ...} '
                          '(and "auto", "error" when they apply) instead of streaming')
    gen.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from .. import load
    from ..call import resolve_call
    from ..core.stats import DecodeStats
    from ..generation import Generation
    from ..pair import DraftOptions

    # every option is checked before anything loads: the call is resolved here, on the
    # pair's options as `load` will set them, and again (the same way) by the pair
    options = call_options(args)
    resolve_call(DraftOptions(draft=args.draft, draft_tokens=args.draft_tokens,
                              adaptive=args.adaptive, suffix_store=args.suffix_store), options)
    if args.draft_system is not None and not args.chat:
        raise SpecpairError("--draft-system needs --chat and a model draft (--draft MODEL)")
    prompt = sys.stdin.read() if args.prompt == "-" else args.prompt
    pair = load(args.target, **load_kwargs(args))
    result = Generation("", [], DecodeStats(), None, True)
    interrupted, error = False, None
    pieces = pair.stream(prompt, chat=args.chat, result=result, call=pair.resolve(options))
    try:
        for piece in pieces:
            if not args.json:
                sys.stdout.write(piece.text)
                sys.stdout.flush()
    except KeyboardInterrupt:
        interrupted = True
    except SpecpairError as e:
        if not args.json:
            raise  # the one-line error alone: the lines below are for a finished generation
        error = e  # under --json the partial output and its statistics still go out
    finally:
        pieces.close()
    for which, where in result.devices.items():
        say(f"{which}: {', '.join(where) if isinstance(where, list) else where}")
    for note in pair.resolver.notes:
        say(note)
    for note in result.notes:
        say(f"auto: {note}" if result.auto is not None else note)
    if args.json:
        out = result.to_dict()
        if interrupted:
            out["error"] = "interrupted"
        if error is not None:
            out["error"] = str(error)
        print(json.dumps(out, ensure_ascii=False))
        return error.exit_code if error is not None else (EXIT_INTERRUPTED if interrupted
                                                          else 0)
    sys.stdout.write("\n")
    lossy = "" if result.exact else f" [LOSSY: {result.acceptance}]"
    print(result.stats.summary() + lossy + (" (interrupted)" if interrupted else ""),
          file=sys.stderr)
    if result.translate_seconds and result.stats.draft_seconds:
        say(f"text-level draft: {result.translate_seconds:.2f} s translating "
            f"({result.translate_seconds / result.stats.draft_seconds:.0%} of drafting time)")
    if result.auto is not None:
        rounds = ", ".join(f"{k}: {v}" for k, v in result.auto["rounds"].items())
        say(f"auto: rounds {rounds}")
    pair.close()
    return EXIT_INTERRUPTED if interrupted else 0
