"""One call's options, resolved once: what a generation asks for is what it gets.

A pair is loaded with `DraftOptions` (how it drafts unless told otherwise); each call (the API's
`stream`/`generate`, a CLI run, a server request) says some `CallOptions` and leaves the rest
unsaid (None). `resolve_call` turns the two into one frozen `Call`: the drafter, its K, the
sampling, the acceptance rule, the suffix tree it reads and whether the suffix store is
written. Nothing downstream compares the call's options with the pair's again: the decode loop,
the planner and the store read the `Call`.

Layering: a server's defaults are `CallOptions` too (`request.over(server_defaults)`), so a
request that omits a field gets the server's value and one that sets it gets its own.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields, replace

from .auto.planner import AUTO_MAX_K
from .core.acceptance import EXACT, LENIENCE, TYPICAL, AcceptanceRule
from .core.decode import DEFAULT_DRAFT_TOKENS, DEFAULT_MAX_TOKENS, DecodeConfig
from .core.sampling import SamplingConfig
from .drafters.model import DEFAULT_DRAFT_P_MIN
from .drafters.ngram import DEFAULT_NGRAM_MAX, DEFAULT_NGRAM_MIN
from .drafters.suffix import SuffixConfig
from .errors import InvalidOption

LOOKUPS = ("none", "ngram", "suffix", "auto")
# stop strings are looked for after every token: bounded as OpenAI bounds them (4), and in
# length (45,000 stops once cost 26 ms a token)
MAX_STOPS = 4
MAX_STOP_CHARS = 256
SCOPES = ("off", "key", "global")
_LORA_NEEDS_MODEL = ("{{draft_lora}} adapts a model draft: add {{draft}} MODEL (the draft it "
                     "was trained for); this drafts with {draft!r}")


@dataclass(frozen=True, kw_only=True)
class DraftOptions:
    """How the pair drafts; every field is a keyword of `load` (and a CLI flag)."""

    draft: str = "auto"  # auto | none | ngram | suffix | a model spec
    draft_tokens: int | None = None  # K; auto and adaptive: the largest K to choose
    draft_p_min: float = DEFAULT_DRAFT_P_MIN
    ngram_min: int = DEFAULT_NGRAM_MIN
    ngram_max: int = DEFAULT_NGRAM_MAX
    adaptive: bool = False  # choose K each round (always on with auto)
    suffix: SuffixConfig = field(default_factory=SuffixConfig)
    suffix_store: str | None = None  # a file: the global suffix tree, kept across runs
    fresh: bool = False  # auto ignores the cost cache and stores nothing (a first run)
    draft_lora: str | None = None  # a LoRA adapter GGUF on the model draft (specpair distill)

    def __post_init__(self) -> None:
        # every option is checked here, before anything loads (the drafters check the same
        # when they are built, which can be after the target's weights)
        if self.draft_tokens is not None:
            DecodeConfig(draft_tokens=self.draft_tokens)  # validates K
        if not 0 <= self.draft_p_min < 1:
            raise InvalidOption(f"{{draft_p_min}} must be in [0, 1) (0 = off), got "
                                f"{self.draft_p_min}")
        if not 1 <= self.ngram_min <= self.ngram_max:
            raise InvalidOption(f"n-gram sizes must satisfy 1 <= {{ngram_min}} <= "
                                f"{{ngram_max}}, got {self.ngram_min}..{self.ngram_max}")
        if self.draft_lora is not None and self.draft in LOOKUPS:
            raise InvalidOption(_LORA_NEEDS_MODEL.format(draft=self.draft))


@dataclass(frozen=True, kw_only=True)
class CallOptions:
    """What one call may ask for. None: not said (the layer below decides: a server's
    defaults, then the pair's options, then the library's defaults)."""

    max_tokens: int | None = None
    temperature: float | None = None
    top_k: int | None = None
    top_p: float | None = None
    min_p: float | None = None
    seed: int | None = None
    stop: tuple[str, ...] | None = None
    lenience: float | None = None
    accept: str | None = None  # exact | typical
    typical_epsilon: float | None = None
    typical_delta: float | None = None
    draft: str | None = None  # auto | none | ngram | suffix | a model spec
    draft_tokens: int | None = None
    draft_system: str | None = None
    suffix_cache: str | None = None  # off | key | global
    draft_lora: str | None = None  # a LoRA adapter GGUF on the call's model draft

    @classmethod
    def of(cls, **options) -> CallOptions:
        """From the API's keywords; an unknown one is refused (a typo must not be ignored)."""
        names = {f.name for f in fields(cls)}
        unknown = sorted(set(options) - names)
        if unknown:
            raise InvalidOption(f"unknown option {unknown[0]!r}: the options of a call are "
                                f"{', '.join(sorted(names))}")
        if options.get("stop") is not None:
            options["stop"] = stop_strings(options["stop"])
        return cls(**options)

    def over(self, base: CallOptions) -> CallOptions:
        """These options where they are said, `base`'s elsewhere."""
        said = {f.name: getattr(self, f.name) for f in fields(self)
                if getattr(self, f.name) is not None}
        return replace(base, **said)


@dataclass(frozen=True, kw_only=True)
class Call:
    """One call, resolved: everything the generation reads about what was asked."""

    draft: str  # the drafter of this call: none | ngram | suffix | auto | a model spec
    adaptive: bool  # K chosen each round (auto always)
    config: DecodeConfig  # max_tokens, K, sampling, stop strings, acceptance rule
    draft_system: str | None  # the model draft's own system prompt
    draft_lora: str | None  # the LoRA adapter on the model draft (None: the draft as it is)
    scope: str  # the suffix lookup's global tree: off | key | global
    tree: str | None  # the partition of the global suffix tree read ("": everyone's; None: none)
    store: bool  # the output goes into the pair's --suffix-store file
    cache_domain: str  # whose cached prompt prefix this call may reuse

    @property
    def sampling(self) -> SamplingConfig:
        return self.config.sampling


def stop_strings(stop: object) -> tuple[str, ...]:
    """`stop` as the OpenAI API takes it: one string is one stop, a list is several. A string
    must not become its characters (stop="User:" would stop at every "U", ":" ...)."""
    if isinstance(stop, str):
        stop = (stop,)
    if not (isinstance(stop, (list, tuple)) and all(isinstance(s, str) for s in stop)):
        raise InvalidOption(f"{{stop}} must be a string or a list of strings, got {stop!r}")
    if len(stop) > MAX_STOPS or any(len(s) > MAX_STOP_CHARS for s in stop):
        raise InvalidOption(f"{{stop}}: at most {MAX_STOPS} strings of at most "
                            f"{MAX_STOP_CHARS} characters each")
    return tuple(stop)


def acceptance_rule(lenience: float = 1.0, accept: str = EXACT, *,
                    typical_epsilon: float | None = None,
                    typical_delta: float | None = None) -> AcceptanceRule:
    """The acceptance rule from the API's keywords (exact unless a lossy one is asked for).
    Typical acceptance's parameters without typical acceptance are refused, not ignored."""
    if accept not in (EXACT, TYPICAL):
        raise InvalidOption(f"{{accept}} must be exact or typical, got {accept!r}")
    if accept == TYPICAL and lenience != 1.0:
        raise InvalidOption("choose one lossy rule: {lenience} or {accept} typical")
    extra = {k: v for k, v in (("epsilon", typical_epsilon), ("delta", typical_delta))
             if v is not None}
    if extra and accept != TYPICAL:
        which = "{typical_epsilon}" if typical_epsilon is not None else "{typical_delta}"
        raise InvalidOption(f"{which} applies to typical acceptance only: add {{accept}} "
                            "typical, or leave it out")
    kind = TYPICAL if accept == TYPICAL else (LENIENCE if lenience != 1.0 else EXACT)
    return AcceptanceRule(kind=kind, lenience=lenience, **extra)


def draft_tokens_for(pair: DraftOptions, draft: str, adaptive: bool) -> int:
    """The K a pair loaded with `draft` (and the pair's other options) would use: the pair's
    K where it was given, else the drafter's own default (auto and adaptive: the largest K to
    choose; a fixed drafter: DEFAULT_DRAFT_TOKENS)."""
    if pair.draft_tokens is not None:
        return pair.draft_tokens
    return AUTO_MAX_K if draft == "auto" or adaptive else DEFAULT_DRAFT_TOKENS


def resolve_call(pair: DraftOptions, options: CallOptions, *, partition: str = "") -> Call:
    """The call's options over the pair's, checked, as one frozen value."""
    o = options
    draft = o.draft or pair.draft
    adaptive = pair.adaptive or draft == "auto"
    if o.draft_system is not None and draft in LOOKUPS:
        raise InvalidOption(f"{{draft_system}} needs a model draft ({{draft}} MODEL), and this "
                            f"call drafts with {draft!r}")
    if o.draft_lora is not None and draft in LOOKUPS:
        raise InvalidOption(_LORA_NEEDS_MODEL.format(draft=draft))
    # the pair's LoRA is for the pair's own model draft; a call that names another model
    # draft gets that model as it is unless it names a LoRA too
    lora = o.draft_lora if o.draft_lora is not None else (
        pair.draft_lora if draft == pair.draft else None)
    scope = o.suffix_cache or "key"
    if scope not in SCOPES:
        raise InvalidOption(f"{{suffix_cache}} must be one of {', '.join(SCOPES)}, got "
                            f"{scope!r}")
    sampling = SamplingConfig(
        temperature=0.0 if o.temperature is None else o.temperature,
        top_k=o.top_k or 0, top_p=1.0 if o.top_p is None else o.top_p,
        min_p=o.min_p or 0.0, seed=o.seed)
    rule = acceptance_rule(1.0 if o.lenience is None else o.lenience, o.accept or EXACT,
                           typical_epsilon=o.typical_epsilon, typical_delta=o.typical_delta)
    k = o.draft_tokens if o.draft_tokens is not None else draft_tokens_for(pair, draft,
                                                                            adaptive)
    config = DecodeConfig(max_tokens=DEFAULT_MAX_TOKENS if o.max_tokens is None
                          else o.max_tokens, draft_tokens=k, sampling=sampling,
                          stop=tuple(o.stop or ()), acceptance=rule)
    tree = None if scope == "off" else ("" if scope == "global" else partition)
    uses_suffix = draft in ("suffix", "auto")
    return Call(draft=draft, adaptive=adaptive, config=config, draft_system=o.draft_system,
                draft_lora=None if draft in LOOKUPS else lora,
                scope=scope, tree=tree if uses_suffix else None,
                store=bool(pair.suffix_store) and uses_suffix and tree == "",
                cache_domain="" if scope == "global" else partition)


__all__ = ["LOOKUPS", "MAX_STOPS", "MAX_STOP_CHARS", "SCOPES", "Call", "CallOptions",
           "DraftOptions", "acceptance_rule", "draft_tokens_for", "resolve_call", "stop_strings"]
