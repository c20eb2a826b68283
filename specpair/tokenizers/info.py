"""Tokenizers read without weights: from a GGUF header, or from HF tokenizer files.

`TokenizerInfo` is what `check.py` compares; `probe_tokenizer` gives a function that tokenizes
text the way the engine would (llama.cpp's vocab-only load for GGUF, the `tokenizers` library for
tokenizer.json), for the round-trip probe.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path

from ..core.text import CONTROL, NORMAL, ORDINARY, UNUSED, USER_DEFINED, piece_bytes
from ..errors import ModelError
from ..models.gguf import read_metadata


@dataclass(frozen=True, kw_only=True)
class TokenizerInfo:
    source: str  # the file it was read from
    format: str  # "gguf" or "tokenizer.json"
    model: str  # "gpt2" (byte-level BPE), "llama" (SentencePiece BPE), "t5" (Unigram), ...
    pre: str  # pre-tokenizer / normaliser (a name for GGUF, canonical JSON for HF)
    tokens: list[str] = field(repr=False)
    types: list[int] = field(repr=False)
    merges: list[str] = field(repr=False)
    special: dict[str, int | None]  # bos/eos/pad/unk -> id
    add_bos: bool
    add_eos: bool
    chat_template: str | None = field(repr=False)

    @cached_property
    def n_real(self) -> int:
        """Ids before the trailing run of unused padding slots (models pad their embedding
        matrix to a round size; HF files omit those slots, GGUF files list them)."""
        n = len(self.tokens)
        while n and self.types[n - 1] == UNUSED:
            n -= 1
        return n

    def token(self, i: int | None) -> str | None:
        return self.tokens[i] if i is not None and 0 <= i < self.n_real else None

    def ordinary(self) -> dict[str, int]:
        return {t: i for i, (t, ty) in enumerate(zip(self.tokens, self.types)) if ty in ORDINARY}

    @property
    def byte_level(self) -> bool:
        return self.model == "gpt2"

    def token_bytes(self, i: int) -> bytes:
        """The bytes token i stands for (core.text.piece_bytes, the one decoder)."""
        return piece_bytes(self.tokens[i], self.types[i], byte_level=self.byte_level)

    @cached_property
    def byte_strings(self) -> dict[bytes, int]:
        """The byte strings the ordinary tokens stand for, each with its first id: what
        plain text can be split into, whatever the convention for spelling it ('Ġ' or '▁')."""
        out: dict[bytes, int] = {}
        for i, (text, kind) in enumerate(zip(self.tokens, self.types)):
            if kind in ORDINARY:
                b = piece_bytes(text, kind, byte_level=self.byte_level)
                if b:
                    out.setdefault(b, i)
        return out

    def summary(self) -> dict:
        markers = sorted({t for t, ty in zip(self.tokens, self.types)
                          if ty in (CONTROL, USER_DEFINED) and self.chat_template
                          and t in self.chat_template})
        return {
            "source": self.source,
            "format": self.format,
            "model": self.model,
            "pre_tokenizer": self.pre if len(self.pre) < 60 else self.pre[:57] + "...",
            "vocab_size": self.n_real,
            "padding_ids": len(self.tokens) - self.n_real,
            "special": {k: {"id": v, "text": self.token(v)} for k, v in self.special.items()},
            "add_bos": self.add_bos,
            "add_eos": self.add_eos,
            "chat_template_markers": markers,
        }


def from_gguf(path: str | Path) -> TokenizerInfo:
    meta = read_metadata(path)
    if "tokenizer.ggml.tokens" not in meta:
        raise ModelError(f"{path} has no tokenizer in its metadata: give a full GGUF model")
    tokens = meta["tokenizer.ggml.tokens"]
    return TokenizerInfo(
        source=str(path),
        format="gguf",
        model=meta.get("tokenizer.ggml.model", "?"),
        pre=meta.get("tokenizer.ggml.pre", "default"),
        tokens=tokens,
        types=meta.get("tokenizer.ggml.token_type", [NORMAL] * len(tokens)),
        merges=meta.get("tokenizer.ggml.merges", []),
        special={name: meta.get(f"tokenizer.ggml.{key}")
                 for name, key in (("bos", "bos_token_id"), ("eos", "eos_token_id"),
                                   ("pad", "padding_token_id"), ("unk", "unknown_token_id"))},
        add_bos=bool(meta.get("tokenizer.ggml.add_bos_token", False)),
        add_eos=bool(meta.get("tokenizer.ggml.add_eos_token", False)),
        chat_template=meta.get("tokenizer.chat_template"),
    )


def _read_json(path: Path) -> dict:
    return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {}


def _hf_files(path: Path) -> tuple[Path, dict, dict]:
    """tokenizer.json, tokenizer_config.json and special_tokens_map.json (the latter two may be
    absent; a bare tokenizer.json has no config)."""
    folder = path if path.is_dir() else path.parent
    file = folder / "tokenizer.json" if path.is_dir() else path
    if not file.is_file():
        raise ModelError(f"no tokenizer.json at {path}: give a .gguf file, a tokenizer.json "
                            "or a folder holding HF tokenizer files")
    try:
        config = _read_json(folder / "tokenizer_config.json") if path.is_dir() else {}
        special_map = _read_json(folder / "special_tokens_map.json") if path.is_dir() else {}
    except (OSError, ValueError) as e:
        raise ModelError(f"cannot read the tokenizer files in {folder}: {e}") from None
    return file, config, special_map


def from_hf(path: str | Path) -> TokenizerInfo:
    file, config, special_map = _hf_files(Path(path))
    try:
        spec = json.loads(file.read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        raise ModelError(f"cannot read tokenizer {file}: {e}") from None
    model = spec.get("model") or {}
    raw_vocab = model.get("vocab") or {}
    if isinstance(raw_vocab, list):  # Unigram: [[piece, score], ...]
        vocab = {piece: i for i, (piece, _score) in enumerate(raw_vocab)}
    else:
        vocab = dict(raw_vocab)
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
    byte_level = "ByteLevel" in json.dumps([spec.get("pre_tokenizer"), spec.get("decoder")])
    kind = {"BPE": "gpt2" if byte_level else "llama", "Unigram": "t5", "WordPiece": "bert"}.get(
        model.get("type", ""), str(model.get("type", "?")).lower())
    pre = json.dumps({"normalizer": spec.get("normalizer"),
                      "pre_tokenizer": spec.get("pre_tokenizer")}, sort_keys=True)

    def special_id(name: str) -> int | None:
        value = config.get(f"{name}_token") or special_map.get(f"{name}_token")
        if isinstance(value, dict):
            value = value.get("content")
        return vocab.get(value) if isinstance(value, str) else None

    single = (spec.get("post_processor") or {}).get("single") or []
    adds_bos = bool(single) and "SpecialToken" in single[0]
    template = config.get("chat_template")
    return TokenizerInfo(
        source=str(file),
        format="tokenizer.json",
        model=kind,
        pre=pre,
        tokens=tokens,
        types=all_types,
        merges=merges,
        special={name: special_id(name) for name in ("bos", "eos", "pad", "unk")},
        add_bos=bool(config.get("add_bos_token", adds_bos)),
        add_eos=bool(config.get("add_eos_token", False)),
        chat_template=template if isinstance(template, str) else None,
    )


def load_tokenizer_info(spec: str) -> TokenizerInfo:
    """The tokenizer of a model spec (see `models.resolve_model`), a tokenizer.json, or a folder
    of HF tokenizer files. Reads tokenizer files only, never weights."""
    from ..models import resolve_model

    plain = spec.split(":", 1)[1] if spec.startswith(("hf:", "gguf:")) else spec
    if Path(plain).expanduser().suffix == ".json":
        return from_hf(Path(plain).expanduser())
    engine, path = resolve_model(spec)
    if path.endswith(".gguf") or (engine == "gguf" and Path(path).is_file()):
        return from_gguf(path)
    if Path(path).is_dir():
        return from_hf(Path(path))
    from huggingface_hub import try_to_load_from_cache  # a hub id in the local cache

    found = try_to_load_from_cache(path, "tokenizer.json")
    if not isinstance(found, str):
        raise ModelError(f"no tokenizer.json for {path} in the local HF cache: download the "
                            "model first, or give its folder")
    return from_hf(Path(found).parent)


def probe_tokenizer(spec: str, info: TokenizerInfo) -> Callable[[str], list[int]]:
    """A function tokenizing text as the engine would (no BOS/EOS added)."""
    if info.format == "gguf":
        from ..backends.llamacpp import LlamaCppVocab

        vocab = LlamaCppVocab(info.source)
        return lambda text: vocab.tokenize(text, add_bos=False)
    from tokenizers import Tokenizer

    tokenizer = Tokenizer.from_file(info.source)
    return lambda text: tokenizer.encode(text, add_special_tokens=False).ids
