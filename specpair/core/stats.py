"""Statistics of one generation, as data. The decode loop yields `Step`s; `DecodeStats.add` folds
them. Benchmarks and reports read these fields; nothing here touches a model."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True, kw_only=True)
class Step:
    """One verification round: the target evaluated its pending token plus `n_drafted` draft tokens.

    `tokens` are what the round adds: the first `n_accepted` came from the draft, the last one is
    the target's own (a resample at the first rejection, or the bonus token). A step may carry
    fewer tokens when generation ends inside it (EOS)."""

    tokens: list[int]
    n_drafted: int
    n_accepted: int
    # draft positions the verification judged: normally min(n_accepted + 1, n_drafted); only
    # n_accepted when an accepted draft token was EOS (the positions after it were never judged)
    n_judged: int | None = None
    draft_seconds: float
    target_seconds: float  # the target's forward pass
    seconds: float  # wall time of the whole round, verification and bookkeeping included
    verify_seconds: float = 0.0  # accepting or rejecting the draft (sampling included)
    prefill_seconds: float = 0.0  # only on the first step: evaluating the prompt
    # only on the first step: the drafter reading the prompt (its lookups' indexes and trees)
    setup_seconds: float = 0.0
    cached_tokens: int = 0  # only on the first step: prompt tokens the cache already held
    finish: str | None = None  # set on the last step: "eos", "max_tokens" or "context"
    note: str | None = None  # something the user should know (drafting stopped, and why)

    @property
    def judged(self) -> int:
        if self.n_judged is not None:
            return self.n_judged
        return min(self.n_accepted + 1, self.n_drafted)

    def from_draft(self, i: int) -> bool:
        """Whether tokens[i] was proposed by the draft (and accepted)."""
        return i < self.n_accepted


@dataclass
class DecodeStats:
    """Counters of one generation (or, merged, of many).

    Definitions follow the ones vLLM and llama.cpp share, so figures compare across engines:
    `drafts` counts verification rounds that had at least one draft token (vLLM's
    spec_decode_num_drafts), `drafted`/`accepted` count draft tokens (num_draft_tokens,
    num_accepted_tokens); mean acceptance length = 1 + accepted / drafts, the tokens one drafted
    round yields on average; per-position acceptance rate = accepted at position i / drafts.
    `alphas` are Leviathan et al.'s conditional rates, P(i accepted | 0..i-1 accepted), which the
    adviser's formula needs.
    """

    prompt_tokens: int = 0
    new_tokens: int = 0
    steps: int = 0  # target forward passes while decoding (one per round)
    drafts: int = 0  # rounds with at least one draft token
    drafted: int = 0
    accepted: int = 0
    # per draft position i: rounds that reached i (tokens 0..i-1 all accepted), and accepted it
    reached_at: list[int] = field(default_factory=list)
    accepted_at: list[int] = field(default_factory=list)
    prefill_seconds: float = 0.0
    decode_seconds: float = 0.0
    draft_seconds: float = 0.0
    target_seconds: float = 0.0
    verify_seconds: float = 0.0
    cached_tokens: int = 0  # prompt tokens reused from the cache (a shared prefix)
    # one-time costs paid before decoding (loading a drafter, measuring costs: --draft auto);
    # end-to-end figures include them, steady-state figures do not
    setup_seconds: float = 0.0
    finish: str | None = None
    notes: list[str] = field(default_factory=list)

    def add(self, step: Step) -> None:
        self.new_tokens += len(step.tokens)
        self.steps += 1
        self.drafts += step.n_drafted > 0
        self.drafted += step.n_drafted
        self.accepted += step.n_accepted
        if len(self.reached_at) < step.n_drafted:
            grow = step.n_drafted - len(self.reached_at)
            self.reached_at += [0] * grow
            self.accepted_at += [0] * grow
        # verification stops at the first rejection: positions 0..n_accepted-1 were accepted,
        # position n_accepted (if drafted) was reached and rejected, later ones never judged
        for i in range(step.judged):
            self.reached_at[i] += 1
            self.accepted_at[i] += i < step.n_accepted
        self.prefill_seconds += step.prefill_seconds
        self.setup_seconds += step.setup_seconds
        self.decode_seconds += step.seconds
        self.draft_seconds += step.draft_seconds
        self.target_seconds += step.target_seconds
        self.verify_seconds += step.verify_seconds
        self.cached_tokens += step.cached_tokens
        self.finish = step.finish or self.finish
        if step.note:
            self.notes.append(step.note)

    def merge(self, other: DecodeStats) -> None:
        """Add another generation's counters into this one (totals over benchmark runs)."""
        for name in ("new_tokens", "steps", "drafts", "drafted", "accepted", "prefill_seconds",
                     "decode_seconds", "draft_seconds", "target_seconds", "setup_seconds",
                     "verify_seconds", "cached_tokens"):
            setattr(self, name, getattr(self, name) + getattr(other, name))
        for mine, theirs in ((self.reached_at, other.reached_at),
                             (self.accepted_at, other.accepted_at)):
            mine.extend([0] * (len(theirs) - len(mine)))
            for i, v in enumerate(theirs):
                mine[i] += v

    @property
    def acceptance_rate(self) -> float:
        """Accepted draft tokens over drafted tokens (0 when nothing was drafted)."""
        return self.accepted / self.drafted if self.drafted else 0.0

    @property
    def mean_acceptance_length(self) -> float:
        """1 + accepted / drafts: tokens a drafted round yields on average (vLLM, llama.cpp).
        0 when nothing was drafted."""
        return 1 + self.accepted / self.drafts if self.drafts else 0.0

    @property
    def tokens_per_second(self) -> float:
        """Steady state: new tokens over decoding time (prompt evaluation and one-time setup
        excluded, alike for every mode)."""
        return self.new_tokens / self.decode_seconds if self.decode_seconds else 0.0

    @property
    def end_to_end_seconds(self) -> float:
        return self.setup_seconds + self.prefill_seconds + self.decode_seconds

    @property
    def end_to_end_tokens_per_second(self) -> float:
        """New tokens over everything the user waited for: setup, prompt and decoding."""
        total = self.end_to_end_seconds
        return self.new_tokens / total if total else 0.0

    @property
    def acceptance_by_position(self) -> list[float]:
        """Per-position acceptance rate as vLLM and llama.cpp report it: draft tokens accepted at
        position i over drafted rounds (unconditional; it falls with i by construction)."""
        return [a / self.drafts if self.drafts else 0.0 for a in self.accepted_at]

    @property
    def alphas(self) -> list[float]:
        """P(draft token i accepted | tokens 0..i-1 were), for i = 0..K-1: the conditional
        per-position acceptance alpha_i of Leviathan et al. (the adviser's input)."""
        return [a / r if r else 0.0 for a, r in zip(self.accepted_at, self.reached_at)]

    def to_dict(self) -> dict:
        return {
            "prompt_tokens": self.prompt_tokens,
            "new_tokens": self.new_tokens,
            "steps": self.steps,
            "drafts": self.drafts,
            "drafted": self.drafted,
            "accepted": self.accepted,
            "acceptance_rate": self.acceptance_rate,
            "mean_acceptance_length": self.mean_acceptance_length,
            "acceptance_by_position": self.acceptance_by_position,
            "alphas": self.alphas,
            "tokens_per_second": self.tokens_per_second,
            "end_to_end_tokens_per_second": self.end_to_end_tokens_per_second,
            "setup_seconds": self.setup_seconds,
            "prefill_seconds": self.prefill_seconds,
            "decode_seconds": self.decode_seconds,
            "draft_seconds": self.draft_seconds,
            "target_seconds": self.target_seconds,
            "verify_seconds": self.verify_seconds,
            "cached_tokens": self.cached_tokens,
            "finish": self.finish,
            "notes": self.notes,
        }

    def summary(self) -> str:
        line = (
            f"{self.new_tokens} new tokens in {self.decode_seconds:.2f} s, "
            f"{self.tokens_per_second:.2f} tokens/s"
        )
        if self.setup_seconds:
            line += (f" ({self.end_to_end_tokens_per_second:.2f} tokens/s end to end, with "
                     f"{self.setup_seconds:.2f} s of setup and {self.prefill_seconds:.2f} s of "
                     "prompt)")
        if self.drafted:
            line += (
                f"; drafted {self.drafted} in {self.drafts} rounds, accepted {self.accepted} "
                f"({self.acceptance_rate:.1%}), mean acceptance length "
                f"{self.mean_acceptance_length:.2f}; draft {self.draft_seconds:.2f} s, "
                f"target {self.target_seconds:.2f} s"
            )
        return line
