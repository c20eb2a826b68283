"""specpair: speculative decoding with any draft/target pair, exact and measured.

    import specpair

    with specpair.load("qwen2.5-coder-1.5b", draft="auto") as pair:
        out = pair.generate("Write a haiku about tides.", max_tokens=64, chat=True)
        print(out.text, out.stats.acceptance_rate, out.exact)
        for piece in pair.stream(messages=[{"role": "user", "content": "Hi"}], seed=1):
            print(piece.text, end="")

    report = specpair.check("big.gguf", "small.gguf")  # do the tokenizers line up?
"""

from .core.stats import DecodeStats  # noqa: E402
from .drafters.suffix import SuffixCache, SuffixConfig  # noqa: E402
from .errors import (  # noqa: E402
    ContextOverflow,
    EngineError,
    IncompatiblePair,
    InvalidOption,
    MissingDependency,
    ModelError,
    SpecpairError,
)
from .generation import Generation, Piece  # noqa: E402
from .pair import Pair, load  # noqa: E402
from .tokenizers.compare import Comparison  # noqa: E402
from .version import __version__


def distill(*, target: str, draft: str, prompts: str, out: str, max_minutes: float | None = None,
            threads: int | None = None, n_ctx: int = 2048, **recipe):
    """Train `draft` toward `target` on the JSONL `prompts`, in the folder `out` (resumable):
    the data, a LoRA (or `full=True`), its llama.cpp adapter (`out`/draft-lora.gguf, for
    `load(..., draft_lora=)`) and the acceptance before and after on held-out prompts.
    `recipe`: the fields of `DistillConfig` (data, temperature, top_k, max_new_tokens,
    held_out, rank, alpha, learning_rate, epochs, batch, loss, ce_weight, seed, ...).
    Returns an `Outcome` (complete, report). Needs the [distill] extra."""
    from dataclasses import fields

    from .distillation.job import DistillConfig
    from .distillation.job import run as _run

    unknown = sorted(set(recipe) - {f.name for f in fields(DistillConfig)})
    if unknown:
        raise InvalidOption(f"unknown distill option {unknown[0]!r}: the options are "
                            f"{', '.join(f.name for f in fields(DistillConfig))}")
    return _run(target=target, draft=draft, prompts=prompts, out=out,
                config=DistillConfig(**recipe), max_minutes=max_minutes, threads=threads,
                n_ctx=n_ctx)


def check(target: str, draft: str, *, probe_text: str | None = None) -> Comparison:
    """Compare two tokenizers without loading weights (GGUF files, tokenizer.json files,
    folders of HF tokenizer files or named models): both sides, their differences, a
    round-trip probe of multilingual text and code (`probe_text` for your own), and a
    verdict: identical, compatible, remappable, text-level or incompatible."""
    from .tokenizers.compare import check as _check

    return _check(target, draft, probe_text=probe_text)


__all__ = ["Comparison", "ContextOverflow", "DecodeStats", "EngineError", "Generation",
           "IncompatiblePair", "InvalidOption", "MissingDependency", "ModelError", "Pair",
           "Piece", "SpecpairError", "SuffixCache", "SuffixConfig", "__version__", "check",
           "distill", "load"]
