"""`specpair.load`: the one place where a pair is resolved, checked, planned by auto and loaded
(lazily). The CLI, the server, bench, advise and steer all go through a `Pair`.

    with specpair.load("qwen2.5-coder-1.5b", draft="auto") as pair:
        out = pair.generate("Write a haiku about tides.", max_tokens=64, chat=True)
        for piece in pair.stream(messages=[...], temperature=0.7, seed=1): ...

A `Pair` holds the target (loaded on first use), the draft models it loads (each once), the
checked comparisons, and the global suffix trees of its lookups. Generation options travel as
keyword arguments and become one frozen `DecodeConfig` per call.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field, replace

import numpy as np

from .auto.planner import AutoPlan, ModelOption, batch_curve, plan, remember
from .backends import DEFAULT_N_CTX, Backend, BackendConfig, parse_gpu_layers
from .call import (
    LOOKUPS,
    Call,
    CallOptions,
    DraftOptions,
    acceptance_rule,
    resolve_call,
)
from .core.decode import check_prompt_fits
from .core.drafter import Drafter
from .core.prompt import encode_prompt
from .core.sampling import SamplingConfig
from .core.stats import DecodeStats, Step
from .drafters.copy import MAX_FACTOR, CopyDrafter
from .drafters.model import DEFAULT_DRAFT_P_MIN
from .drafters.ngram import DEFAULT_NGRAM_MAX, DEFAULT_NGRAM_MIN, NgramDrafter
from .drafters.suffix import SuffixCache, SuffixConfig, SuffixDrafter
from .errors import InvalidOption
from .exclusive import Exclusive
from .generation import Generation, Piece, PieceMaker, stream_pieces
from .models import DEFAULT_TARGET
from .resolve import DraftSource, Resolver
from .schedule import DEFAULT_TOKEN_BUDGET, Request, Scheduler
from .suffix_trees import SuffixTrees


@dataclass
class Drafting:
    """The drafter of one generation, and what set it up."""

    drafter: Drafter | None
    plan: AutoPlan | None = None
    setup_seconds: float = 0.0
    notes: list[str] = field(default_factory=list)
    models: list[str] = field(default_factory=list)  # the model drafts auto loaded to use

    @property
    def name(self) -> str:
        return "none" if self.drafter is None else self.drafter.name


def _add(gen: Generation, piece: Piece) -> None:
    gen.text += piece.text
    gen.tokens += piece.tokens
    gen.finish_reason = piece.finish_reason or gen.finish_reason


def _noting(load, used: list[str], spec: str):
    def noted():
        drafter = load()
        used.append(spec)
        return drafter
    return noted


class Pair:
    def __init__(self, target: str | Backend, *, target_config: BackendConfig,
                 draft_config: BackendConfig, options: DraftOptions) -> None:
        self.options = options
        # first: an unwritable store is refused before the target is even looked for
        self.trees = SuffixTrees(options.suffix, options.suffix_store, lambda: self.target)
        self.resolver = Resolver(target, target_config=target_config, draft_config=draft_config)
        if options.draft not in LOOKUPS:
            self.resolver.verdict(options.draft)  # a pair that cannot work fails here
            if options.draft_lora:
                self.resolver.check_lora(options.draft, options.draft_lora)
        self._domain: str | None = None  # whose prompt the models' caches hold (see stream)
        self._exclusive = Exclusive()  # one generation at a time on the models

    # -- what the pair holds --------------------------------------------------------------
    @property
    def target(self) -> Backend:
        """The target model (loaded on first use)."""
        return self.resolver.target

    @property
    def spec(self) -> str:
        return self.resolver.target_spec

    def suffix_cache(self, partition: str = "") -> SuffixCache:
        """The global suffix tree of one partition (an API key's, or everyone's)."""
        return self.trees.tree(partition)

    # -- one call ---------------------------------------------------------------------------
    def resolve(self, options: CallOptions | None = None, *, partition: str = "") -> Call:
        """A call's options over the pair's, checked and frozen (see call.py): what every
        generation of this pair reads, whoever called it (API, CLI, server)."""
        call = resolve_call(self.options, options or CallOptions(), partition=partition)
        if call.draft not in LOOKUPS:
            self.resolver.verdict(call.draft)  # a per-call model draft that cannot work
            if call.draft_lora:
                self.resolver.check_lora(call.draft, call.draft_lora)
        return call

    # -- drafters ---------------------------------------------------------------------------
    def lookup(self, name: str, *, tree: str | None = None,
               max_factor: float | None = None) -> Drafter:
        """A lookup drafter: `ngram` (at most `max_factor` times its match), or `suffix`
        reading the global suffix tree of partition `tree` ("": everyone's; None: no global
        tree, the request alone)."""
        o = self.options
        if name == "ngram":
            return NgramDrafter(n_min=o.ngram_min, n_max=o.ngram_max, max_factor=max_factor)
        return SuffixDrafter(None if tree is None else self.suffix_cache(tree), o.suffix)

    def model_drafter(self, spec: str, *, sampling: SamplingConfig,
                      rng: np.random.Generator, p_min: float | None = None,
                      lora: str | None = None) -> Drafter:
        """A model drafter of `spec` (with the LoRA adapter `lora`) for one generation (its
        weights loaded once per pair)."""
        if lora:
            self.resolver.check_lora(spec, lora)
        return self.resolver.drafter(spec, sampling=sampling, rng=rng, lora=lora,
                                     p_min=self.options.draft_p_min if p_min is None else p_min)

    def drafting(self, call: Call, *, rng: np.random.Generator, kind: str,
                 fresh: bool | None = None, lookups_only: bool = False) -> Drafting:
        """The drafter of one generation, as `call` says; built per generation since it
        carries the generation's sampling. auto and adaptive plan here."""
        spec, sampling = call.draft, call.sampling
        o = self.options
        fresh = o.fresh if fresh is None else fresh
        t0 = time.perf_counter()
        if spec == "none":
            return Drafting(None)
        free: list[Drafter] = []
        used: list[str] = []
        forced: Drafter | None = None
        forced_key = None
        models: list[ModelOption] = []
        if spec in ("ngram", "suffix"):
            lookup = self.lookup(spec, tree=call.tree)
            if not call.adaptive:
                return Drafting(lookup)
            free.append(lookup)
        elif spec == "auto":
            # both lookups, judged in shadow every round (they cost ~0.1 ms to ask): the suffix
            # tree knows earlier outputs and frequencies, but its proposals end at its depth
            # (24): in a long copy the n-gram lookup proposes 64 tokens (measured on
            # bench/repeated_task.jsonl: MEASUREMENTS.md)
            free.append(self.lookup("suffix", tree=call.tree))
            free.append(self.lookup("ngram", max_factor=MAX_FACTOR))
            # and the long-copy lookup: a repeat of a dozen tokens or more, followed for as long
            # as the text goes on copying it (up to K = 64), cut where copies part
            free.append(CopyDrafter())
            # a model draft holds one context: it cannot draft for several requests at once
            for s in ([] if lookups_only else self.resolver.auto_drafts()):
                option = self.resolver.option(s, sampling=sampling, rng=rng, p_min=o.draft_p_min)
                models.append(replace(option, load=_noting(option.load, used, s)))
        else:
            forced = self.model_drafter(spec, sampling=sampling, rng=rng, lora=call.draft_lora)
            if not call.adaptive:
                return Drafting(forced, None, time.perf_counter() - t0)
            forced_key = self.resolver.draft_cost_key(spec, call.draft_lora)
        p = plan(self.target, self.resolver.target_engine, self.resolver.target_config,
                 free=free, models=models, forced=forced, forced_key=forced_key, kind=kind,
                 max_k=call.config.draft_tokens, fresh=fresh, domain=call.cache_domain,
                 max_tokens=call.config.max_tokens)
        return Drafting(p.drafter, p, time.perf_counter() - t0, list(p.notes), used)

    def forget_suffix(self, partition: str) -> None:
        """Drop a partition's global suffix tree (a benchmark's warm-up must not teach it)."""
        self.trees.forget(partition)

    def remember(self, drafting: Drafting, *, fresh: bool | None = None) -> None:
        """Store what auto measured (a fresh pair stores nothing)."""
        fresh = self.options.fresh if fresh is None else fresh
        if drafting.plan is not None and not fresh:
            remember(drafting.plan, config=self.resolver.target_config)

    # -- generating -------------------------------------------------------------------------
    def suffix_caches(self) -> dict[str, SuffixCache]:
        """The global suffix trees, by partition."""
        return self.trees.all()

    def prompt_tokens(self, prompt: str | None = None, *, messages: list[dict] | None = None,
                      chat: bool = False, tokens: list[int] | None = None) -> list[int]:
        if tokens is not None:
            return list(tokens)
        if (prompt is None) == (messages is None):
            raise InvalidOption("give a prompt or messages (one of them)")
        if messages is not None:
            return encode_prompt(self.target, messages, chat=True)
        return encode_prompt(self.target, prompt or "", chat=chat)

    def stream(self, prompt: str | None = None, *, messages: list[dict] | None = None,
               tokens: list[int] | None = None, kind: str | None = None, chat: bool = False,
               partition: str = "", call: Call | None = None,
               result: Generation | None = None, **options) -> Iterator[Piece]:
        """Pieces of text as they are produced (see `Piece`); `result`, if given, is filled
        in as the generation goes (the CLI and the server read statistics from it).

        `options` are the call's (`CallOptions`: max_tokens, temperature, top_k, top_p, min_p,
        seed, stop, lenience, accept, typical_epsilon, typical_delta, draft, draft_tokens,
        draft_system, suffix_cache, draft_lora); what a call leaves out is the pair's. `call`:
        a call already resolved (`resolve`; the server's), instead of `options`. `tokens`: an
        already tokenized prompt; `kind`: the kind of text auto keeps acceptance priors for
        (default: chat or raw); `partition`: whose suffix tree and prompt cache it may use (an
        API key's digest)."""
        if call is None:
            call = self.resolve(CallOptions.of(**options), partition=partition)
        elif options:
            raise InvalidOption("give a resolved call or options, not both")
        with self._exclusive.held():
            yield from self._stream(call, prompt, messages, tokens, kind, chat, result)

    def _stream(self, call: Call, prompt, messages, tokens, kind, chat,
                result) -> Iterator[Piece]:
        tokens = self.prompt_tokens(prompt, messages=messages, chat=chat, tokens=tokens)
        kind = kind or ("chat" if (chat or messages is not None) else "raw")
        self._enter_domain(call.cache_domain)
        gen = result if result is not None else Generation("", [], DecodeStats(), None, True)
        rng, drafting, drafter = self._begin(call, gen, kind, tokens, prompt, messages)
        try:
            for piece in stream_pieces(self.target, drafter, tokens, config=call.config,
                                       rng=rng, stats=gen.stats):
                _add(gen, piece)
                yield piece
        finally:
            self._end(call, gen, drafting, drafter)

    def _begin(self, call: Call, gen: Generation, kind: str, tokens: list[int], prompt,
               messages, *, slots: int = 1
               ) -> tuple[np.random.Generator, Drafting, Drafter | None]:
        """One generation's RNG and drafter, and what its Generation says of them. Beside
        other requests (`slots` > 1) auto drafts with its lookups only (a model draft holds
        one context), and the batch chooses its K (it offers: schedule/goodput.py)."""
        config = call.config
        rng = np.random.default_rng(config.sampling.seed)
        drafting = self.drafting(call, rng=rng, kind=kind, lookups_only=slots > 1)
        drafter = drafting.drafter
        if call.draft_system is not None and drafter is not None:
            drafter = self._system_prompted(drafter, call.draft_system, prompt, messages,
                                            tokens)
        gen.stats.setup_seconds = drafting.setup_seconds
        rule = config.acceptance
        gen.exact, gen.acceptance = rule.exact, rule.to_dict()
        gen.drafter, gen.notes = drafting.name, drafting.notes
        return rng, drafting, drafter

    def _end(self, call: Call, gen: Generation, drafting: Drafting,
             drafter: Drafter | None) -> None:
        """What a generation leaves behind when it ends: auto's measurements, the suffix
        store, and its Generation's notes and devices."""
        self.remember(drafting)
        if drafting.plan is not None:
            gen.auto = drafting.plan.to_dict()
        gen.translate_seconds = drafter.translate_seconds if drafter is not None else 0.0
        gen.devices = self.resolver.devices()
        gen.notes += gen.stats.notes
        if call.store and (note := self.trees.save(gen.tokens)):
            gen.notes.append(note)

    def generate_batch(self, items: Sequence[str | list[dict]], *, chat: bool = False,
                       partition: str = "", **options) -> list[Generation]:
        """Several generations at once: `items` are prompts (text; `chat` wraps each in the
        chat template) or conversations ([{"role", "content"}, ...]), all with the same
        options (those of `generate`). They decode together, up to `parallel` at a time (the
        target's sequences: `load(parallel=N)`), in one batch per step; the Generations come
        back in the order of `items`, each as it would be alone (up to the numerical near-ties
        a batch changes)."""
        asked = CallOptions.of(**options)
        scheduler = self.scheduler()
        if scheduler.n_slots > 1 and resolve_call(self.options, asked).draft not in LOOKUPS:
            raise InvalidOption("a model draft decodes one request at a time: with "
                                "{parallel} > 1 draft with auto, suffix, ngram or none")
        call = self.resolve(asked, partition=partition)
        prompts = [self.prompt_tokens(messages=item) if isinstance(item, list) else
                   self.prompt_tokens(item, chat=chat) for item in items]
        for tokens in prompts:  # every prompt is checked before any decodes
            check_prompt_fits(self.target, len(tokens))
        with self._exclusive.held():
            runs = []
            for item, tokens in zip(items, prompts):
                gen = Generation("", [], DecodeStats(), None, True)
                request, end = self.scheduled(
                    tokens, call=call, result=gen, slots=scheduler.n_slots,
                    kind="chat" if (chat or isinstance(item, list)) else "raw",
                    prompt=None if isinstance(item, list) else item,
                    messages=item if isinstance(item, list) else None)
                runs.append((gen, end, scheduler.submit(request)))
            try:
                scheduler.run()
            finally:
                scheduler.cancel_all()
                for _, end, _ in runs:
                    end()
        for _, _, handle in runs:
            if handle.error is not None:
                raise handle.error
        return [gen for gen, _, _ in runs]

    def scheduler(self) -> Scheduler:
        """A scheduler over the target's sequences (several: on the stored verify curve)."""
        r = self.resolver
        curve = None if getattr(self.target, "n_seq", 1) == 1 else batch_curve(
            self.target, r.target_engine, r.target_config, points=DEFAULT_TOKEN_BUDGET,
            fresh=self.options.fresh)
        return Scheduler(self.target, curve=curve)

    def scheduled(self, tokens: list[int], *, call: Call, result: Generation, kind: str,
                  slots: int = 1, prompt: str | None = None,
                  messages: list[dict] | None = None,
                  on_piece: Callable[[Piece], object] = lambda piece: None,
                  go_on: Callable[[], bool] = lambda: True) -> tuple[Request, Callable[[], None]]:
        """One generation for a scheduler (the batch call's, the server's): its `Request`, whose
        rounds become Pieces (to `on_piece`) and fill `result`, and the function to call when
        it has ended. `go_on` False ends it at its next round (the client left)."""
        if slots > 1 and call.draft not in LOOKUPS:
            raise InvalidOption("a model draft decodes one request at a time: with "
                                "{parallel} > 1 draft with auto, suffix, ngram or none")
        self._enter_domain(call.cache_domain)
        rng, drafting, drafter = self._begin(call, result, kind, tokens, prompt, messages,
                                             slots=slots)
        maker = PieceMaker(self.target, tokens, config=call.config, stats=result.stats)

        def on_step(step: Step) -> bool:
            for piece in maker.pieces(step):
                _add(result, piece)
                on_piece(piece)
            return not maker.done and go_on()

        request = Request(prompt=tokens, config=call.config, rng=rng, drafter=drafter,
                          domain=call.cache_domain, on_step=on_step)
        return request, lambda: self._end(call, result, drafting, drafter)

    def generate(self, prompt: str | None = None, **options) -> Generation:
        """The whole generation (the keywords of `stream`)."""
        result = Generation("", [], DecodeStats(), None, True)
        for _ in self.stream(prompt, result=result, **options):
            pass
        return result

    def _enter_domain(self, domain: str) -> None:
        """The models' caches keep the last generation's prompt and output, and how much of
        the next prompt they already hold shows in its prefill time and cached-token count:
        reuse them only within one trust domain (an API key, or everyone under
        suffix_cache global). Another domain's call starts from empty caches."""
        if self._domain is not None and domain != self._domain:
            self.resolver.forget_contexts()
        self._domain = domain

    def _system_prompted(self, drafter: Drafter, system: str, prompt, messages,
                         tokens: list[int]) -> Drafter:
        from .drafters.system_prompt import SystemPromptDrafter

        conversation = messages or [{"role": "user", "content": prompt or ""}]
        draft_prompt = encode_prompt(self.target, [{"role": "system", "content": system},
                                                   *conversation], chat=True)
        return SystemPromptDrafter(drafter, target_prompt_len=len(tokens),
                                   draft_prompt=draft_prompt)

    def close(self) -> None:
        self.resolver.close()

    def __enter__(self) -> Pair:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def load(target: str | Backend = DEFAULT_TARGET, *, draft: str | None = "auto",
         draft_tokens: int | None = None, n_ctx: int = DEFAULT_N_CTX,
         threads: int | None = None, device: str = "auto", dtype: str = "auto",
         gpu_layers: int | str | None = None, draft_gpu_layers: int | str | None = None,
         compile: bool = False, draft_p_min: float = DEFAULT_DRAFT_P_MIN,
         ngram_min: int = DEFAULT_NGRAM_MIN, ngram_max: int = DEFAULT_NGRAM_MAX,
         adaptive: bool = False, suffix: SuffixConfig | None = None,
         suffix_store: str | None = None, fresh: bool = False,
         draft_lora: str | None = None, parallel: int = 1) -> Pair:
    """A target and how it drafts. `target` and a model `draft` are model specs: a named model,
    a .gguf file (llama.cpp), an HF folder or `hf:`/`gguf:` prefixed spec (transformers); the
    target may also be a Backend you built (any engine that implements the protocol).
    `draft`: "auto" (the default: lookups, and a model draft where its costs can win),
    "suffix", "ngram", "none"/None (plain decoding), or a model spec. Nothing heavy happens
    here beyond checking a model draft's tokenizer against the target's: weights load on first
    use. `draft_lora`: a LoRA adapter GGUF (`specpair distill`'s) applied to the model draft
    on llama.cpp; refused unless it was trained on that draft. `parallel`: requests the
    target decodes at once (`generate_batch`, `serve --parallel`): llama.cpp holds that many
    sequences of `n_ctx` tokens each in one context."""
    target_config = BackendConfig(n_ctx=n_ctx, threads=threads, device=device, dtype=dtype,
                                  gpu_layers=parse_gpu_layers(gpu_layers), compile=compile,
                                  n_seq=parallel)
    draft_config = BackendConfig(n_ctx=n_ctx, threads=threads, device=device, dtype=dtype,
                                 gpu_layers=parse_gpu_layers(draft_gpu_layers), compile=compile)
    options = DraftOptions(draft=draft or "none", draft_tokens=draft_tokens,
                           draft_p_min=draft_p_min, ngram_min=ngram_min, ngram_max=ngram_max,
                           adaptive=adaptive, suffix=suffix or SuffixConfig(),
                           suffix_store=suffix_store, fresh=fresh, draft_lora=draft_lora)
    return Pair(target, target_config=target_config, draft_config=draft_config, options=options)


__all__ = ["Call", "CallOptions", "DraftOptions", "DraftSource", "Drafting", "Generation",
           "Pair", "Piece", "acceptance_rule", "load"]
