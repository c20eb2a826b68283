"""What the subcommands share: option groups, parsed arguments to the API's keyword arguments
(in one place), the flag spelling of the API's option names in error messages, and output
helpers. Imports stay light: `--help` must be fast."""

from __future__ import annotations

import argparse
import json
import os
import sys

from ..errors import InvalidOption

# API option names whose flag is not simply --name-with-dashes
_FLAGS = {"draft_tokens": "--draft-tokens/-k", "max_tokens": "--max-tokens/-n",
          "suffix_cache": "--suffix-cache", "suffix_store": "--suffix-store",
          "logprobs": "--top-k-logprobs", "learning_rate": "--lr"}


def flag(name: str) -> str:
    """How the CLI spells the API's option `name` (errors name the flag, not the keyword)."""
    return _FLAGS.get(name, "--" + name.replace("_", "-"))


def require(extra: str, module: str, what: str) -> None:
    """A one-line error naming the extra when an optional dependency is missing."""
    import importlib.util

    from ..errors import missing_extra

    if importlib.util.find_spec(module) is None:
        raise missing_extra(extra, module, what)


def say(message: str) -> None:
    print(f"specpair: {message}", file=sys.stderr)


def add_model_options(p: argparse.ArgumentParser, *, draft_default: str,
                      drafts: str = "one") -> None:
    from ..backends import DEFAULT_N_CTX
    from ..drafters.model import DEFAULT_DRAFT_P_MIN
    from ..drafters.ngram import DEFAULT_NGRAM_MAX, DEFAULT_NGRAM_MIN
    from ..models import DEFAULT_TARGET, MODELS

    names = ", ".join(MODELS)
    p.add_argument("--target", default=DEFAULT_TARGET, metavar="MODEL",
                   help=f"the model whose output you want: a .gguf file or a name ({names}), an "
                        f"HF folder, or hf:/gguf: SPEC; default {DEFAULT_TARGET}")
    p.add_argument("--draft", default=[draft_default] if drafts == "many" else draft_default,
                   metavar="DRAFTER", nargs="+" if drafts == "many" else None,
                   help="'auto' (choose every round between plain steps, the suffix lookup and "
                        "a model draft that can pay on this machine, from stored costs and "
                        "acceptance learned while decoding: gains where text repeats, about "
                        "plain's speed elsewhere, up to 13%% slower on a few workloads, see "
                        "docs/MEASUREMENTS.md); 'suffix' (suffix decoding: what followed the "
                        "longest match in this request and in earlier outputs; no model); "
                        "'ngram' (prompt "
                        "lookup); 'none' (plain decoding); or a model (.gguf file or name) "
                        f"(forces a model draft); default {draft_default}")
    p.add_argument("--draft-lora", default=None, metavar="FILE",
                   help="a LoRA adapter GGUF on the model draft (llama.cpp), such as the one "
                        "`specpair distill` writes (DIR/draft-lora.gguf); refused unless it was "
                        "trained on that draft")
    p.add_argument("--ngram-min", type=int, default=DEFAULT_NGRAM_MIN, metavar="N",
                   help=f"ngram drafter: shortest n-gram to match (default {DEFAULT_NGRAM_MIN})")
    p.add_argument("--ngram-max", type=int, default=DEFAULT_NGRAM_MAX, metavar="N",
                   help=f"ngram drafter: longest n-gram to match (default {DEFAULT_NGRAM_MAX})")
    p.add_argument("--draft-p-min", type=float, default=DEFAULT_DRAFT_P_MIN, metavar="P",
                   help="model drafter: stop drafting when the draft's top probability falls "
                        f"below P (default {DEFAULT_DRAFT_P_MIN}; 0 = off)")
    p.add_argument("--adaptive", action="store_true",
                   help="choose K each round from measured costs and recent acceptance, down to "
                        "plain steps when drafting does not pay (always on with --draft auto)")
    p.add_argument("--n-ctx", type=int, default=DEFAULT_N_CTX, metavar="N",
                   help=f"context length in tokens (default {DEFAULT_N_CTX}, at most the "
                        "model's); serve --parallel N: each slot's, N contexts in all")
    p.add_argument("--threads", type=int, default=None, metavar="N",
                   help="CPU threads per model (default: the CPUs this process may use, from "
                        "its affinity and cgroup quota)")
    p.add_argument("--gpu-layers", default=None, metavar="N|all",
                   help="llama.cpp: target layers to offload to the GPU (llama.cpp's count; "
                        "default all where this llama-cpp-python has GPU support, else 0)")
    p.add_argument("--draft-gpu-layers", default=None, metavar="N|all",
                   help="llama.cpp: the same for a model draft (default as --gpu-layers)")
    p.add_argument("--device", default="auto", metavar="DEV",
                   help="transformers models: cpu, cuda, cuda:N or auto (default)")
    p.add_argument("--dtype", default="auto", metavar="TYPE",
                   help="transformers models: float32, bfloat16, float16 or auto (default: "
                        "float32 on CPU, bfloat16 on GPU)")
    p.add_argument("--compile", action="store_true",
                   help="transformers on CUDA: run decoding's fixed shapes as CUDA graphs "
                        "(torch.compile, reduce-overhead); compile time is reported as setup")
    add_suffix_options(p)


def add_suffix_options(p: argparse.ArgumentParser) -> None:
    from ..drafters.suffix import (
        DEFAULT_MAX_CACHED_REQUESTS,
        DEFAULT_MAX_CACHED_TOKENS,
        DEFAULT_MAX_SPEC_FACTOR,
        DEFAULT_MAX_TREE_DEPTH,
        DEFAULT_MIN_TOKEN_PROB,
    )

    g = p.add_argument_group("suffix decoding (vLLM's option names)")
    g.add_argument("--suffix-max-tree-depth", type=int, default=DEFAULT_MAX_TREE_DEPTH,
                   metavar="N", help="longest match and proposal, in tokens (default "
                                     f"{DEFAULT_MAX_TREE_DEPTH})")
    g.add_argument("--suffix-max-spec-factor", type=float, default=DEFAULT_MAX_SPEC_FACTOR,
                   metavar="F", help="propose at most F x the match length (default "
                                     f"{DEFAULT_MAX_SPEC_FACTOR})")
    g.add_argument("--suffix-min-token-prob", type=float, default=DEFAULT_MIN_TOKEN_PROB,
                   metavar="P", help="stop a proposal where its estimated probability falls "
                                     f"below P (default {DEFAULT_MIN_TOKEN_PROB})")
    g.add_argument("--suffix-max-cached-requests", type=int, default=DEFAULT_MAX_CACHED_REQUESTS,
                   metavar="N", help="earlier outputs the global tree keeps (default "
                                     f"{DEFAULT_MAX_CACHED_REQUESTS})")
    g.add_argument("--suffix-max-cached-tokens", type=int, default=DEFAULT_MAX_CACHED_TOKENS,
                   metavar="N", help="tokens the global tree keeps, oldest outputs out first "
                                     f"(default {DEFAULT_MAX_CACHED_TOKENS:,}: ~50 MB on real "
                                     "text)")


def add_sampling_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--temperature", type=float, default=0.0, metavar="T",
                   help="0 (default) is greedy: argmax, no randomness; > 0 samples")
    p.add_argument("--top-k", type=int, default=0, metavar="K", help="keep the K most likely "
                   "tokens (0 = off)")
    p.add_argument("--top-p", type=float, default=1.0, metavar="P", help="keep the smallest set "
                   "of tokens whose probability reaches P (1 = off)")
    p.add_argument("--min-p", type=float, default=0.0, metavar="P", help="drop tokens less "
                   "likely than P times the most likely one (0 = off)")
    p.add_argument("--seed", type=int, default=None, metavar="S",
                   help="seed for sampling: the same seed gives the same output with a fixed "
                        "drafter and K, and with any lookup or auto that drafts only with "
                        "lookups (their proposals carry no probabilities); a sampled model "
                        "draft chosen by auto can differ run to run")


def add_acceptance_options(p: argparse.ArgumentParser) -> None:
    from ..core.acceptance import DEFAULT_TYPICAL_DELTA, DEFAULT_TYPICAL_EPSILON

    p.add_argument("--lenience", type=float, default=1.0, metavar="L",
                   help="LOSSY when < 1: accept a draft token with min(1, p/(L q)) (Leviathan "
                        "et al.'s lenience; greedy: when its logit is within log(1/L) of the "
                        "best). The draft then shifts the output. Default 1: exact")
    p.add_argument("--accept", choices=["exact", "typical"], default="exact",
                   help="typical: Medusa's typical acceptance (LOSSY). Default exact")
    p.add_argument("--typical-epsilon", type=float, default=None, metavar="E",
                   help=f"--accept typical: epsilon (default {DEFAULT_TYPICAL_EPSILON}; "
                        "refused without --accept typical)")
    p.add_argument("--typical-delta", type=float, default=None, metavar="D",
                   help=f"--accept typical: delta (default {DEFAULT_TYPICAL_DELTA}; refused "
                        "without --accept typical)")


def suffix_config(args: argparse.Namespace):
    from ..drafters.suffix import SuffixConfig

    return SuffixConfig(max_tree_depth=args.suffix_max_tree_depth,
                        max_cached_requests=args.suffix_max_cached_requests,
                        max_cached_tokens=args.suffix_max_cached_tokens,
                        max_spec_factor=args.suffix_max_spec_factor,
                        min_token_prob=args.suffix_min_token_prob)


def load_kwargs(args: argparse.Namespace, *, draft: str | None = None) -> dict:
    """The keyword arguments of `specpair.load` from parsed arguments: the one conversion."""
    return {"draft": draft if draft is not None else args.draft,
            "draft_tokens": getattr(args, "draft_tokens", None) if not isinstance(
                getattr(args, "draft_tokens", None), list) else None,
            "n_ctx": args.n_ctx, "threads": args.threads, "device": args.device,
            "dtype": args.dtype, "gpu_layers": args.gpu_layers,
            "draft_gpu_layers": args.draft_gpu_layers, "compile": args.compile,
            "draft_p_min": args.draft_p_min, "ngram_min": args.ngram_min,
            "ngram_max": args.ngram_max, "adaptive": args.adaptive,
            "suffix": suffix_config(args),
            "suffix_store": getattr(args, "suffix_store", None),
            "draft_lora": args.draft_lora if draft is None else None}


def sampling_kwargs(args: argparse.Namespace) -> dict:
    return {"temperature": args.temperature, "top_k": args.top_k, "top_p": args.top_p,
            "min_p": args.min_p, "seed": args.seed}


def call_options(args: argparse.Namespace, **more):
    """The call's options (`CallOptions`) from parsed arguments: the one conversion, so every
    flag a subcommand has reaches the call, or is refused with it."""
    from ..call import CallOptions

    said = {**sampling_kwargs(args), **more}
    for name in ("max_tokens", "lenience", "accept", "typical_epsilon", "typical_delta",
                 "draft_system"):
        if hasattr(args, name):
            said[name] = getattr(args, name)
    if getattr(args, "stop", None):
        said["stop"] = tuple(args.stop)
    return CallOptions.of(**said)


def sampling_config(args: argparse.Namespace):
    from ..core.sampling import SamplingConfig

    return SamplingConfig(**sampling_kwargs(args))


def backend_config(args: argparse.Namespace):
    from ..backends import BackendConfig, parse_gpu_layers

    return BackendConfig(n_ctx=args.n_ctx, threads=args.threads,
                         device=getattr(args, "device", "auto"),
                         dtype=getattr(args, "dtype", "auto"),
                         gpu_layers=parse_gpu_layers(getattr(args, "gpu_layers", None)))


def write_json(report: dict, path: str | None) -> None:
    """--json FILE: the report as JSON, to FILE or (for "-") to stdout."""
    if not path:
        return
    text = json.dumps(report, indent=2)
    if path == "-":
        print(text)
    else:
        with open(path, "w") as f:
            f.write(text + "\n")


def check_writable(path: str) -> None:
    """Fail before a long benchmark, not after it, when an output file cannot be written."""
    folder = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(folder) or not os.access(folder, os.W_OK):
        raise InvalidOption(f"cannot write {path}: folder {folder} does not exist or is "
                            "not writable")
