"""`specpair steer`: can a draft steer its target? Exact against lossy acceptance, measured."""

from __future__ import annotations

import argparse

from ..errors import InvalidOption
from .common import add_sampling_options, check_writable, sampling_config, write_json

# measure/steer.py's defaults, spelled here so that --help stays fast (steer imports scipy)
STEER_SYSTEM = "You are a pirate. Start every sentence with 'Arr,' and call the user 'matey'."
STEER_LENIENCES = (0.1, 1e-5, 1e-10)


def add(sub) -> None:
    from ..backends import DEFAULT_N_CTX
    from ..models import DEFAULT_DRAFT, DEFAULT_TARGET

    st = sub.add_parser(
        "steer", help="can a draft steer its target? exact vs lossy acceptance, measured",
        description="Gives the draft its own system prompt (the target sees the user's "
                    "message unchanged), samples N outputs per setting (plain sampling, exact "
                    "verification, each lenience, typical acceptance) and reports the trait's "
                    "rate with a 95%% CI, its difference from plain sampling (Welch's t-test), "
                    "the first token's exact total-variation distance from the target's, "
                    "acceptance and speed, and a one-line verdict.")
    st.add_argument("--target", default=DEFAULT_TARGET, metavar="MODEL")
    st.add_argument("--draft", default=DEFAULT_DRAFT, metavar="MODEL",
                    help="a model draft (a fine-tuned one works too)")
    st.add_argument("--draft-system", default=STEER_SYSTEM, metavar="TEXT",
                    help="the draft's own system prompt (default: %(default)r; a bare 'Answer "
                         "like a pirate.' leaves Qwen2.5-Coder-0.5B talking plainly)")
    st.add_argument("--prompt", default="Tell me about your favourite place to visit.",
                    metavar="TEXT", help="the user's message, as the target sees it")
    st.add_argument("--trait", default="pirate", metavar="TRAIT",
                    help="what to count per 100 words: pirate (a built-in word list), "
                         "re:PATTERN, or word1,word2,...")
    st.add_argument("--samples", type=int, default=100, metavar="N",
                    help="outputs per setting (default 100)")
    st.add_argument("--max-tokens", "-n", type=int, default=128, metavar="N",
                    help="tokens per output (default 128)")
    st.add_argument("--leniences", dest="lenience_values", type=float, nargs="+",
                    default=list(STEER_LENIENCES), metavar="L",
                    help="lossy settings besides L = 1 (default 0.1 1e-5 1e-10: lenience passes "
                         "a draft token x with min(1, p(x)/(L q(x))), so words the target finds "
                         "unlikely need tiny L)")
    st.add_argument("--no-typical", action="store_true", help="leave out typical acceptance")
    st.add_argument("--samples-file", metavar="PATH",
                    help="append every sample (its text, tokens, time, acceptance) to PATH as "
                         "JSON lines as it finishes; rerunning with the same PATH and options "
                         "goes on where a stopped run left off, and more --samples extends it")
    st.add_argument("--draft-tokens", "-k", type=int, default=4, metavar="K")
    add_sampling_options(st)
    st.set_defaults(temperature=0.8)
    st.add_argument("--n-ctx", type=int, default=DEFAULT_N_CTX, metavar="N",
                    help="context length")
    st.add_argument("--threads", type=int, default=None, metavar="N", help="CPU threads")
    st.add_argument("--json", metavar="FILE", help="write the study as JSON (- = stdout)")
    st.add_argument("--markdown", metavar="FILE", help="write the table and verdict")
    st.add_argument("--plot", metavar="FILE", help="PNG: trait rate and speed vs lenience")

    st.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from .common import require

    require("bench", "scipy", "specpair steer")
    if args.plot:
        require("plot", "matplotlib", "--plot")
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from .. import load
    from ..core.console import stderr_console
    from ..measure import steer

    if args.samples < 2 or args.max_tokens < 1:
        raise InvalidOption("--samples must be >= 2 and --max-tokens >= 1")
    for lenience in args.lenience_values:
        if not 0 < lenience < 1:
            raise InvalidOption(f"--leniences are values in (0, 1), got {lenience}")
    for path in (args.json, args.markdown, args.plot, args.samples_file):
        if path and path != "-":
            check_writable(path)
    sampling = sampling_config(args)
    pair = load(args.target, draft=args.draft, n_ctx=args.n_ctx, threads=args.threads)
    target = pair.target
    draft = pair.resolver.draft_backend(args.draft)
    n_settings = len(steer.settings_for(args.lenience_values, not args.no_typical))
    records: list[dict] = []
    on_record = lambda r: None  # noqa: E731
    if args.samples_file:
        header = steer.study_header(target=target.name, draft=draft.name, user=args.prompt,
                                    draft_system=args.draft_system,
                                    max_tokens=args.max_tokens, k=args.draft_tokens,
                                    sampling=sampling)
        records = steer.load_samples(args.samples_file, header)
        on_record = lambda r: steer.append_sample(args.samples_file, r)  # noqa: E731
        if records:
            stderr_console().print(f"steer: {len(records)} samples already in "
                                   f"{args.samples_file}; going on from there")
    progress = Progress(TextColumn("steer"), BarColumn(), MofNCompleteColumn(),
                        TextColumn("samples"), TimeElapsedColumn(), console=stderr_console(),
                        transient=True)
    try:
        with progress:
            task = progress.add_task("steer", total=n_settings * args.samples)
            report = steer.run_study(
                target, draft, user=args.prompt, draft_system=args.draft_system,
                trait=args.trait, samples=args.samples, max_tokens=args.max_tokens,
                sampling=sampling, k=args.draft_tokens, leniences=args.lenience_values,
                typical=not args.no_typical, records=records, on_record=on_record,
                advance=lambda n: progress.advance(task, n))
    except KeyboardInterrupt:
        if args.samples_file:
            stderr_console().print(f"steer: {len(records)} samples kept in "
                                   f"{args.samples_file}; rerun the same command to go on")
        raise
    report["about"] |= {"target": target.name, "draft": draft.name}
    text = steer.markdown(report)
    print(text)
    if args.markdown:
        with open(args.markdown, "w") as f:
            f.write(text)
    if args.plot:
        steer.plot(report, args.plot)
    write_json(report, args.json)
    return 0
