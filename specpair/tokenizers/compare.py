"""Do two tokenizers line up, and exactly how do they differ? (`specpair check`)

A draft's tokens are verified by id against the target's distribution, so any draft is *exact*;
the tokenizers decide whether the draft can guess well, i.e. whether the target's tokens mean the
same text to the draft. Verdicts, from best to worst:

- ``identical``: same vocabulary, merges, special tokens and settings.
- ``compatible``: every ordinary token has the same text under the same id; the differences are
  in tokens that plain text does not produce (padding, unused slots, renamed or extra special
  tokens, listed). Drafting works directly.
- ``remappable``: the same ordinary token strings and merges, under different ids; drafting works
  through an id translation table (built here).
- ``text-level``: the same text would be split differently (tokenizer model, pre-tokenizer,
  merges or ordinary vocabulary differ). Drafting still works, exactly, through text
  (crossvocab.py): the target's tokens become text, the draft reads it in its own tokens, and
  its proposal is re-tokenized for the target. The report counts the token strings both
  vocabularies share by the bytes they stand for (byte-level BPE writes a leading space as 'Ġ',
  SentencePiece as '▁': compared as bytes, they are the same string).
- ``incompatible``: the draft cannot produce text at all (no ordinary tokens): exit 3.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property
from importlib import resources

import numpy as np

from ..core.text import CONTROL, ORDINARY, TYPE_NAMES, UNKNOWN, UNUSED, USER_DEFINED
from ..errors import IncompatiblePair
from .info import TokenizerInfo, load_tokenizer_info, probe_tokenizer
from .shared import shared_strings

IDENTICAL, COMPATIBLE, REMAPPABLE, TEXT_LEVEL, INCOMPATIBLE = (
    "identical", "compatible", "remappable", "text-level", "incompatible")
N_EXAMPLES = 5


@dataclass
class Comparison:
    verdict: str
    reasons: list[str]
    target: TokenizerInfo
    draft: TokenizerInfo
    same_id_same_text: int = 0
    union_size: int = 0
    differing_ids: list[tuple[int, str | None, str | None]] = field(default_factory=list)
    n_differing_ids: int = 0
    only_target: list[str] = field(default_factory=list)
    only_draft: list[str] = field(default_factory=list)
    moved: list[tuple[str, int, int]] = field(default_factory=list)  # text, target id, draft id
    special_differences: list[str] = field(default_factory=list)
    draft_to_target: dict[int, int] | None = None  # the translation table (remappable)
    probe: dict | None = None
    shared_bytes: int | None = None  # token strings both have, compared as bytes (text-level)

    @cached_property
    def shared(self) -> tuple[np.ndarray, np.ndarray]:
        """(draft ids, target ids) of the strings both vocabularies have (tokenizers/shared.py),
        computed once per pair and kept: token-level intersection drafts over them."""
        return shared_strings(self.target, self.draft)

    def to_dict(self) -> dict:
        def examples(items: list) -> dict:
            return {"count": len(items), "examples": items[:N_EXAMPLES]}

        return {
            "verdict": self.verdict,
            "reasons": self.reasons,
            "target": self.target.summary(),
            "draft": self.draft.summary(),
            "same_id_same_text": self.same_id_same_text,
            "union_size": self.union_size,
            "same_fraction": self.same_id_same_text / self.union_size if self.union_size else 1,
            "differing_ids": {"count": self.n_differing_ids, "examples": [
                {"id": i, "target": a, "draft": b} for i, a, b in self.differing_ids]},
            "only_target": examples(self.only_target),
            "only_draft": examples(self.only_draft),
            "moved": {"count": len(self.moved), "examples": [
                {"text": t, "target_id": a, "draft_id": b} for t, a, b in self.moved[:N_EXAMPLES]]},
            "special_differences": self.special_differences,
            "translation_table_size": len(self.draft_to_target or {}),
            "shared_byte_strings": self.shared_bytes,
            "probe": self.probe,
        }


def show(tokens: list) -> str:
    """Tokens as a reader can see them: byte-level BPE's space/newline marks made visible."""
    return ", ".join(repr(t).replace("Ġ", "␣").replace("Ċ", "\\n") for t in tokens)


def compare(target: TokenizerInfo, draft: TokenizerInfo) -> Comparison:
    """Compare two tokenizers structurally and give a verdict with its reasons."""
    n_t, n_d = target.n_real, draft.n_real
    union = max(n_t, n_d)
    t_all = {target.tokens[i]: i for i in range(n_t)}
    d_all = {draft.tokens[i]: i for i in range(n_d)}
    differing = [(i, target.token(i), draft.token(i)) for i in range(union)
                 if target.token(i) != draft.token(i)]
    cmp = Comparison(
        verdict=IDENTICAL, reasons=[], target=target, draft=draft,
        same_id_same_text=union - len(differing), union_size=union,
        differing_ids=differing[:N_EXAMPLES], n_differing_ids=len(differing),
        only_target=[t for t in t_all if t not in d_all],
        only_draft=[t for t in d_all if t not in t_all],
        moved=[(t, t_all[t], i) for t, i in d_all.items() if t in t_all and t_all[t] != i],
    )
    hard: list[str] = []  # the same text would be split differently
    if target.model != draft.model:
        hard.append(f"different tokenizer models: {target.model} vs {draft.model}")
    if target.format == draft.format and target.pre != draft.pre:
        hard.append("different pre-tokenizers/normalisers: "
                    f"{target.summary()['pre_tokenizer']} vs {draft.summary()['pre_tokenizer']}")
    if target.merges != draft.merges:
        if set(target.merges) == set(draft.merges):
            hard.append("the same merges in a different order (different merge priorities)")
        else:
            n_diff = len(set(target.merges) ^ set(draft.merges))
            hard.append(f"different merge lists ({len(target.merges)} vs {len(draft.merges)} "
                        f"merges, {n_diff} not shared)")
    t_ord, d_ord = target.ordinary(), draft.ordinary()
    if set(t_ord) != set(d_ord):
        only = sorted(set(t_ord) ^ set(d_ord))
        hard.append(f"different ordinary vocabularies ({len(set(t_ord) - set(d_ord))} tokens "
                    f"only in the target, {len(set(d_ord) - set(t_ord))} only in the draft, "
                    f"e.g. {show(only[:3])})")
    remapped = [t for t, i in d_ord.items() if t in t_ord and t_ord[t] != i]
    soft = [f"{len(remapped)} ordinary tokens have other ids, e.g. {show(remapped[:3])}"
            ] if remapped else []
    cmp.special_differences = _special_differences(target, draft)
    soft += cmp.special_differences

    if not d_ord:
        cmp.verdict, cmp.reasons = INCOMPATIBLE, ["the draft has no ordinary tokens: it cannot "
                                                  "produce text"] + hard
    elif hard:
        cmp.shared_bytes = len(cmp.shared[0])
        cmp.verdict = TEXT_LEVEL
        cmp.reasons = hard + soft + [
            f"drafting goes through text (exact, string-level); {cmp.shared_bytes:,} token "
            "strings are shared by the bytes they stand for"]
    elif remapped:
        cmp.verdict, cmp.reasons = REMAPPABLE, soft
        cmp.draft_to_target = {i: t_all[t] for t, i in d_all.items() if t in t_all}
    elif soft or target.types[:n_t] != draft.types[:n_d]:
        cmp.verdict = COMPATIBLE
        cmp.reasons = soft or ["only token types differ"]
    else:
        cmp.reasons = ["same vocabulary, merges, special tokens and settings"]
    return cmp


def _special_differences(target: TokenizerInfo, draft: TokenizerInfo) -> list[str]:
    out = []
    n_t, n_d = target.n_real, draft.n_real
    for i in range(min(n_t, n_d)):
        a, b, ta, tb = target.tokens[i], draft.tokens[i], target.types[i], draft.types[i]
        if a != b and ta not in ORDINARY and tb not in ORDINARY:
            out.append(f"id {i}: special token {show([a])} in the target is {show([b])} "
                       "in the draft")
        elif a == b and ta != tb:
            out.append(f"id {i} {show([a])}: {TYPE_NAMES.get(ta, ta)} in the target, "
                       f"{TYPE_NAMES.get(tb, tb)} in the draft")
    for side, info, other_n in (("target", target, n_d), ("draft", draft, n_t)):
        extra = range(other_n, info.n_real)
        if extra:
            kinds = {info.types[i] for i in extra}
            note = (": special tokens that plain text does not produce"
                    if kinds <= {CONTROL, UNUSED, USER_DEFINED, UNKNOWN} else "")
            out.append(f"the {side} has {len(extra)} more ids ({extra.start}..{extra.stop - 1}, "
                       f"e.g. {show([info.tokens[i] for i in list(extra)[:3]])}){note}")
    for name in ("bos", "eos", "pad", "unk"):
        a, b = target.special[name], draft.special[name]
        if a != b:
            out.append(f"{name.upper()}: {target.token(a)!r} (id {a}) in the target, "
                       f"{draft.token(b)!r} (id {b}) in the draft")
    for flag in ("add_bos", "add_eos"):
        if getattr(target, flag) != getattr(draft, flag):
            out.append(f"{flag.replace('_', ' ')}: {getattr(target, flag)} in the target, "
                       f"{getattr(draft, flag)} in the draft")
    return out


def builtin_probe_text() -> str:
    return resources.files("specpair").joinpath("data/probe.txt").read_text("utf-8")


def run_probe(cmp: Comparison, target_spec: str, draft_spec: str, text: str) -> dict:
    """Tokenize each line of `text` with both tokenizers (draft ids through the translation
    table when there is one); report the fraction of text split into identical ids."""
    tokenize_t = probe_tokenizer(target_spec, cmp.target)
    tokenize_d = probe_tokenizer(draft_spec, cmp.draft)
    table = cmp.draft_to_target
    lines = [line for line in text.splitlines() if line.strip()]
    same = total = 0
    differing = []
    for line in lines:
        a = tokenize_t(line)
        b = tokenize_d(line)
        if table is not None:
            b = [table.get(i, -1) for i in b]
        total += len(line)
        if a == b:
            same += len(line)
        else:
            differing.append(line[:70])
    fraction = same / total if total else 1.0
    return {"lines": len(lines), "characters": total, "identical_fraction": fraction,
            "differing_lines": differing[:N_EXAMPLES]}


def check(target_spec: str, draft_spec: str, *, probe_text: str | None = None) -> Comparison:
    """The full check: structure, then the round-trip probe, which can only make it worse."""
    target, draft = load_tokenizer_info(target_spec), load_tokenizer_info(draft_spec)
    cmp = compare(target, draft)
    if cmp.verdict not in (TEXT_LEVEL, INCOMPATIBLE):
        text = builtin_probe_text() if probe_text is None else probe_text
        cmp.probe = run_probe(cmp, target_spec, draft_spec, text)
        if cmp.probe["identical_fraction"] < 1.0:
            cmp.verdict = TEXT_LEVEL
            cmp.shared_bytes = len(cmp.shared[0])
            cmp.reasons.insert(0, f"the probe split {1 - cmp.probe['identical_fraction']:.1%} of "
                                  "the sample text into different ids: drafting goes through "
                                  "text")
    return cmp


def check_pair(target_spec: str, draft_spec: str) -> Comparison:
    """The check `generate` and `bench` run on a pair: structural only (no probe: it needs no
    tokenizer load), refusing only a draft that cannot produce text (exit code 3); a
    text-level pair drafts through text."""
    cmp = compare(load_tokenizer_info(target_spec), load_tokenizer_info(draft_spec))
    if cmp.verdict == INCOMPATIBLE:
        raise IncompatiblePair(
            f"the draft's tokenizer does not line up with the target's ({cmp.reasons[0]}); "
            f"specpair.check({target_spec!r}, {draft_spec!r}) gives the whole report")
    return cmp
