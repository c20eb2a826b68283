"""Do two tokenizers line up? Read tokenizers (never weights) and compare them.

A draft's tokens are verified by id against the target's distribution, so any draft is *exact*;
what the tokenizers decide is whether the draft can guess well (and whether the target's tokens
mean the same text to the draft). The verdicts, from best to worst:

- ``identical``: same vocabulary, merges, special tokens and settings.
- ``compatible``: every ordinary token has the same text under the same id; the differences are
  in tokens that cannot appear from text (padding at the end, unused slots) or special tokens that
  map by name or id. Drafting works directly.
- ``remappable``: the same ordinary token strings and merges, under different ids; drafting works
  through an id translation table (built here).
- ``incompatible``: the same text would be split differently (different tokenizer model,
  pre-tokenizer, merges or ordinary vocabulary): needs string-level translation.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from .errors import EXIT_INCOMPATIBLE, SpecpairError
from .gguf_meta import read_metadata

IDENTICAL, COMPATIBLE, REMAPPABLE, INCOMPATIBLE = (
    "identical", "compatible", "remappable", "incompatible",
)
# GGUF token types (llama.cpp's llama_token_type); HF tokenizers are mapped onto them.
NORMAL, UNKNOWN, CONTROL, USER_DEFINED, UNUSED, BYTE = 1, 2, 3, 4, 5, 6
_ORDINARY = (NORMAL, BYTE, 0)  # tokens that plain text is split into
N_EXAMPLES = 5


@dataclass(frozen=True, kw_only=True)
class TokenizerInfo:
    source: str  # the file it was read from
    format: str  # "gguf" or "tokenizer.json"
    model: str  # BPE flavour: "gpt2" (byte-level BPE), "llama" (SentencePiece), ...
    pre: str  # pre-tokenizer / normaliser (a name for GGUF, canonical JSON for HF)
    tokens: list[str]
    types: list[int]
    merges: list[str] = field(repr=False)
    special: dict[str, int | None]  # bos/eos/pad/unk -> id
    add_bos: bool
    add_eos: bool
    chat_template: str | None

    def token(self, i: int | None) -> str | None:
        return self.tokens[i] if i is not None and 0 <= i < len(self.tokens) else None

    def ordinary(self) -> dict[str, int]:
        return {t: i for i, (t, ty) in enumerate(zip(self.tokens, self.types)) if ty in _ORDINARY}

    def summary(self) -> dict:
        chat_markers = sorted(
            {t for t, ty in zip(self.tokens, self.types) if ty == CONTROL
             and self.chat_template and t in self.chat_template}
        )
        return {
            "source": self.source,
            "format": self.format,
            "model": self.model,
            "pre_tokenizer": self.pre if len(self.pre) < 60 else self.pre[:57] + "...",
            "vocab_size": len(self.tokens),
            "special": {k: {"id": v, "text": self.token(v)} for k, v in self.special.items()},
            "add_bos": self.add_bos,
            "add_eos": self.add_eos,
            "chat_template_markers": chat_markers,
        }


def from_gguf(path: str | Path) -> TokenizerInfo:
    meta = read_metadata(path)
    if "tokenizer.ggml.tokens" not in meta:
        raise SpecpairError(f"{path} has no tokenizer in its metadata: give a full GGUF model")
    tokens = meta["tokenizer.ggml.tokens"]
    return TokenizerInfo(
        source=str(path),
        format="gguf",
        model=meta.get("tokenizer.ggml.model", "?"),
        pre=meta.get("tokenizer.ggml.pre", "default"),
        tokens=tokens,
        types=meta.get("tokenizer.ggml.token_type", [NORMAL] * len(tokens)),
        merges=meta.get("tokenizer.ggml.merges", []),
        special={
            name: meta.get(f"tokenizer.ggml.{name}_token_id")
            for name in ("bos", "eos", "pad", "unk")
        },
        add_bos=bool(meta.get("tokenizer.ggml.add_bos_token", False)),
        add_eos=bool(meta.get("tokenizer.ggml.add_eos_token", False)),
        chat_template=meta.get("tokenizer.chat_template"),
    )


def from_hf(path: str | Path) -> TokenizerInfo:
    """A `tokenizer.json`, or a directory with tokenizer.json (+ tokenizer_config.json and
    special_tokens_map.json, which say which tokens are BOS/EOS/PAD/UNK)."""
    path = Path(path)
    folder = path if path.is_dir() else path.parent
    file = path / "tokenizer.json" if path.is_dir() else path
    try:
        spec = json.loads(file.read_text(encoding="utf-8"))
        config = _read_json(folder / "tokenizer_config.json") if path.is_dir() else {}
        special_map = _read_json(folder / "special_tokens_map.json") if path.is_dir() else {}
    except (OSError, ValueError) as e:
        raise SpecpairError(f"cannot read tokenizer {file}: {e}") from None
    model = spec.get("model") or {}
    vocab: dict[str, int] = dict(model.get("vocab") or {})
    if isinstance(model.get("vocab"), list):  # Unigram: [[piece, score], ...]
        vocab = {piece: i for i, (piece, _score) in enumerate(model["vocab"])}
    types: dict[int, int] = {}
    for added in spec.get("added_tokens") or []:
        vocab[added["content"]] = added["id"]
        types[added["id"]] = CONTROL if added.get("special") else USER_DEFINED
    n = max(vocab.values(), default=-1) + 1
    tokens = [f"[UNUSED_{i}]" for i in range(n)]
    all_types = [UNUSED] * n
    for text, i in vocab.items():
        tokens[i] = text
        all_types[i] = types.get(i, NORMAL)
    merges = [m if isinstance(m, str) else " ".join(m) for m in model.get("merges") or []]
    kind = {"BPE": "gpt2" if _is_byte_level(spec) else "llama", "Unigram": "t5"}.get(
        model.get("type", ""), str(model.get("type", "?")).lower()
    )
    pre = json.dumps(
        {"normalizer": spec.get("normalizer"), "pre_tokenizer": spec.get("pre_tokenizer")},
        sort_keys=True,
    )

    def special_id(name: str) -> int | None:
        value = config.get(f"{name}_token") or special_map.get(f"{name}_token")
        if isinstance(value, dict):
            value = value.get("content")
        return vocab.get(value) if isinstance(value, str) else None

    return TokenizerInfo(
        source=str(file),
        format="tokenizer.json",
        model=kind,
        pre=pre,
        tokens=tokens,
        types=all_types,
        merges=merges,
        special={name: special_id(name) for name in ("bos", "eos", "pad", "unk")},
        add_bos=bool(config.get("add_bos_token", _post_processor_adds_bos(spec))),
        add_eos=bool(config.get("add_eos_token", False)),
        chat_template=config.get("chat_template") if isinstance(config.get("chat_template"), str)
        else None,
    )


def _read_json(path: Path) -> dict:
    return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {}


def _is_byte_level(spec: dict) -> bool:
    return "ByteLevel" in json.dumps(spec.get("pre_tokenizer")) or "ByteLevel" in json.dumps(
        spec.get("decoder")
    )


def _post_processor_adds_bos(spec: dict) -> bool:
    single = (spec.get("post_processor") or {}).get("single") or []
    return bool(single) and "SpecialToken" in single[0]


def load_tokenizer_info(spec: str) -> TokenizerInfo:
    """A model spec, a .gguf file, a tokenizer.json or a folder of HF tokenizer files."""
    from .models import MODELS, resolve_model

    engine, _, rest = spec.partition(":")
    if spec in MODELS or engine == "gguf":
        return from_gguf(resolve_model(spec)[1])
    path = Path(spec).expanduser()
    if path.is_dir() or path.suffix == ".json":
        if not (path / "tokenizer.json" if path.is_dir() else path).is_file():
            raise SpecpairError(f"no tokenizer.json at {spec}: give a .gguf file, a tokenizer.json "
                                "or a folder holding HF tokenizer files")
        return from_hf(path)
    return from_gguf(resolve_model(spec)[1])


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
    n_moved: int = 0
    special_differences: list[str] = field(default_factory=list)
    draft_to_target: dict[int, int] | None = None  # the translation table (remappable)
    probe: dict | None = None

    def to_dict(self) -> dict:
        return {
            "verdict": self.verdict,
            "reasons": self.reasons,
            "target": self.target.summary(),
            "draft": self.draft.summary(),
            "same_id_same_text": self.same_id_same_text,
            "union_size": self.union_size,
            "same_fraction": self.same_id_same_text / self.union_size if self.union_size else 1.0,
            "differing_ids": {"count": self.n_differing_ids, "examples": [
                {"id": i, "target": a, "draft": b} for i, a, b in self.differing_ids]},
            "only_target": {"count": len(self.only_target),
                            "examples": self.only_target[:N_EXAMPLES]},
            "only_draft": {"count": len(self.only_draft), "examples": self.only_draft[:N_EXAMPLES]},
            "moved": {"count": self.n_moved, "examples": [
                {"text": t, "target_id": a, "draft_id": b} for t, a, b in self.moved]},
            "special_differences": self.special_differences,
            "translation_table_size": len(self.draft_to_target or {}),
            "probe": self.probe,
        }


def compare(target: TokenizerInfo, draft: TokenizerInfo) -> Comparison:
    """Compare two tokenizers and give a verdict with its reasons (module docstring)."""
    n_t, n_d = len(target.tokens), len(draft.tokens)
    union = max(n_t, n_d)
    same = sum(1 for a, b in zip(target.tokens, draft.tokens) if a == b)
    differing = [
        (i, target.token(i), draft.token(i))
        for i in range(union)
        if target.token(i) != draft.token(i)
    ]
    t_all = {t: i for i, t in enumerate(target.tokens)}
    d_all = {t: i for i, t in enumerate(draft.tokens)}
    moved = [(t, t_all[t], i) for t, i in d_all.items() if t in t_all and t_all[t] != i]
    cmp = Comparison(
        verdict=IDENTICAL, reasons=[], target=target, draft=draft,
        same_id_same_text=same, union_size=union,
        differing_ids=differing[:N_EXAMPLES], n_differing_ids=len(differing),
        only_target=[t for t in target.tokens if t not in d_all],
        only_draft=[t for t in draft.tokens if t not in t_all],
        moved=moved[:N_EXAMPLES], n_moved=len(moved),
    )
    hard: list[str] = []  # reasons the same text would be split differently
    soft: list[str] = []  # differences that do not change how text is split
    if target.model != draft.model:
        hard.append(f"different tokenizer models: {target.model} vs {draft.model}")
    if target.format == draft.format and target.pre != draft.pre:
        hard.append("different pre-tokenizers/normalisers: "
                    f"{target.summary()['pre_tokenizer']} vs "
                    f"{draft.summary()['pre_tokenizer']}")
    if target.merges != draft.merges:
        if set(target.merges) == set(draft.merges):
            hard.append("the same merges in a different order (different merge priorities)")
        else:
            n_diff = len(set(target.merges) ^ set(draft.merges))
            hard.append(f"different merge lists ({len(target.merges)} vs {len(draft.merges)} "
                        f"merges, {n_diff} not shared)")
    t_ord, d_ord = target.ordinary(), draft.ordinary()
    if set(t_ord) != set(d_ord):
        only_t, only_d = set(t_ord) - set(d_ord), set(d_ord) - set(t_ord)
        hard.append(f"different ordinary vocabularies ({len(only_t)} tokens only in the target, "
                    f"{len(only_d)} only in the draft, e.g. "
                    f"{_show(sorted(only_t | only_d)[:3])})")
    remapped = [t for t, i in d_ord.items() if t in t_ord and t_ord[t] != i]
    if remapped:
        soft.append(f"{len(remapped)} ordinary tokens have different ids, e.g. "
                    f"{_show(remapped[:3])}")

    # special tokens: renamed at the same id, present on one side only, different roles
    for i in range(union):
        a, b = target.token(i), draft.token(i)
        ta = target.types[i] if i < n_t else None
        tb = draft.types[i] if i < n_d else None
        if a == b or (ta in _ORDINARY and tb in _ORDINARY):
            continue
        if a is None or b is None:
            continue  # extra slots at the end: summarised below
        if ta not in _ORDINARY and tb not in _ORDINARY:
            cmp.special_differences.append(f"id {i}: special token {_show([a])} in the target "
                                           f"is {_show([b])} in the draft")
    for side, info, other_n in (("target", target, n_d), ("draft", draft, n_t)):
        extra = range(other_n, len(info.tokens))
        if extra:
            kinds = {info.types[i] for i in extra}
            cannot_appear = kinds <= {CONTROL, UNUSED, USER_DEFINED, UNKNOWN}
            cmp.special_differences.append(
                f"the {side} has {len(extra)} more ids ({extra.start}..{extra.stop - 1}, e.g. "
                f"{_show([info.tokens[i] for i in list(extra)[:3]])})"
                + (": special/padding tokens that plain text never produces" if cannot_appear
                   else "")
            )
    for name in ("bos", "eos", "pad", "unk"):
        a, b = target.special[name], draft.special[name]
        if a != b:
            cmp.special_differences.append(
                f"{name.upper()}: {target.token(a)!r} (id {a}) in the target, "
                f"{draft.token(b)!r} (id {b}) in the draft")
    if target.add_bos != draft.add_bos:
        cmp.special_differences.append(f"add BOS: {target.add_bos} in the target, "
                                       f"{draft.add_bos} in the draft")
    soft += cmp.special_differences

    if hard:
        cmp.verdict, cmp.reasons = INCOMPATIBLE, hard + soft
    elif remapped:
        cmp.verdict, cmp.reasons = REMAPPABLE, soft
        cmp.draft_to_target = {i: t_all[t] for t, i in d_all.items() if t in t_all}
    elif soft or target.tokens != draft.tokens or target.types != draft.types:
        cmp.verdict = COMPATIBLE
        cmp.reasons = soft or ["only token types differ"]
    else:
        cmp.reasons = ["same vocabulary, merges, special tokens and settings"]
    return cmp


def _show(tokens: list) -> str:
    """Tokens as a reader can see them: repr, with byte-level BPE's space/newline marks decoded."""
    return ", ".join(repr(t).replace("Ġ", "␣").replace("Ċ", "\\n") for t in tokens)


def check_pair(target_spec: str, draft_spec: str) -> Comparison:
    """The check `generate` runs on a pair: refuses incompatible pairs with exit code 3."""
    cmp = compare(load_tokenizer_info(target_spec), load_tokenizer_info(draft_spec))
    if cmp.verdict == INCOMPATIBLE:
        raise SpecpairError(
            f"the draft's tokenizer does not line up with the target's ({cmp.reasons[0]}); "
            f"run  specpair check {target_spec} {draft_spec}  for the whole report",
            exit_code=EXIT_INCOMPATIBLE,
        )
    return cmp
