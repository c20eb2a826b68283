"""HF transformers / PyTorch models, on CPU or CUDA: a local model folder, a hub id already in
the local cache, or a GGUF file (transformers dequantizes it into torch; needs `accelerate`).

Install with `pip install 'specpair[hf]'`. The KV cache is rewound through the cache object's own
API (`crop`), never recomputed. Logits are returned as float32 numpy arrays, so verification and
sampling are the same pure functions as for llama.cpp.
"""

from __future__ import annotations

import inspect
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from ..errors import SpecpairError
from ..vocab import gpt2_byte_decoder
from . import BackendConfig, as_messages, check_eval, check_rewind

try:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer, DynamicCache
except ImportError as e:  # raised as a user error by load_backend
    raise SpecpairError(
        f"the transformers engine needs the [hf] extra ({e.name} is missing): "
        "pip install 'specpair[hf]'") from None

_DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}


def _resolve_device(device: str) -> str:
    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise SpecpairError("--device cuda, but PyTorch sees no CUDA GPU: use --device cpu or "
                            "install a CUDA build of torch")
    if device != "cpu" and not device.startswith("cuda"):
        raise SpecpairError(f"--device must be cpu, cuda, cuda:N or auto, got {device!r}")
    return device


def _resolve_dtype(dtype: str, device: str):
    if dtype == "auto":  # float32 on CPU (no fast half kernels there), bfloat16 on GPUs
        return torch.float32 if device == "cpu" else torch.bfloat16
    if dtype not in _DTYPES:
        raise SpecpairError(f"--dtype must be auto, {', '.join(_DTYPES)}; got {dtype!r}")
    return _DTYPES[dtype]


class HFBackend:
    def __init__(self, path: str, config: BackendConfig, *, model=None, tokenizer=None) -> None:
        """Load from `path` (a folder, a cached hub id, or a .gguf file), or wrap an already
        loaded model and tokenizer (two backends can then share weights, each with its cache)."""
        self.path = path
        self.name = Path(path).name or path
        self.device = _resolve_device(config.device)
        if config.threads:
            torch.set_num_threads(config.threads)
        if model is None:
            model, tokenizer = self._load(path, _resolve_dtype(config.dtype, self.device))
        self.model = model.to(self.device).eval()
        self.tokenizer = tokenizer
        cfg = self.model.config
        self.n_vocab = int(self.model.get_output_embeddings().weight.shape[0])
        self.n_ctx = min(config.n_ctx, int(getattr(cfg, "max_position_embeddings", config.n_ctx)))
        eos = {tokenizer.eos_token_id}
        gen = getattr(self.model, "generation_config", None)
        gen_eos = getattr(gen, "eos_token_id", None)
        eos |= set(gen_eos) if isinstance(gen_eos, list) else {gen_eos}
        self.eos_ids = frozenset(i for i in eos if i is not None)
        if not getattr(tokenizer, "is_fast", False):
            raise SpecpairError(f"{path}: only a slow (Python) tokenizer is available; specpair "
                                "needs a fast one: add the model's tokenizer.json to its folder")
        self._byte_level = "ByteLevel" in str(tokenizer.backend_tokenizer.decoder)
        self._bytes = gpt2_byte_decoder() if self._byte_level else {}
        self._special = set(tokenizer.all_special_ids) | set(tokenizer.added_tokens_decoder)
        self._pieces: dict[int, bytes] = {}
        self._cache = DynamicCache()
        self._tokens: list[int] = []
        forward_args = inspect.signature(self.model.forward).parameters
        # newer transformers 5 releases name the argument `cache` (past_key_values deprecated)
        self._cache_arg = "cache" if "cache" in forward_args else "past_key_values"
        crop_args = inspect.signature(DynamicCache.crop).parameters
        # transformers 5 crops by a negative count of tokens to remove; 4.x took the length
        self._crop_by_removal = "tokens_to_remove" in crop_args

    @staticmethod
    def _load(path: str, dtype):
        spec = Path(path).expanduser()
        kwargs = {"dtype": dtype, "local_files_only": True}
        if spec.suffix == ".gguf":
            folder, kwargs["gguf_file"] = str(spec.parent), spec.name
        else:
            folder = str(spec) if spec.exists() else path  # else: a hub id in the local cache
        try:
            tokenizer = AutoTokenizer.from_pretrained(folder, **{k: v for k, v in kwargs.items()
                                                                 if k != "dtype"})
            model = AutoModelForCausalLM.from_pretrained(folder, **kwargs)
        except (OSError, ValueError) as e:
            first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
            raise SpecpairError(f"transformers could not load {path}: {first}") from None
        return model, tokenizer

    @property
    def tokens(self) -> list[int]:
        return list(self._tokens)

    def tokenize(self, text: str, *, add_bos: bool = True) -> list[int]:
        return list(self.tokenizer(text, add_special_tokens=add_bos)["input_ids"])

    def token_bytes(self, token: int) -> bytes:
        piece = self._pieces.get(token)
        if piece is None:
            text = self.tokenizer.convert_ids_to_tokens(token)
            if token in self._special or text is None:
                piece = self.tokenizer.decode([token]).encode()
            elif self._byte_level and all(c in self._bytes for c in text):
                piece = bytes(self._bytes[c] for c in text)
            elif text.startswith("<0x") and text.endswith(">") and len(text) == 6:
                piece = bytes([int(text[3:5], 16)])  # SentencePiece byte fallback
            else:
                piece = text.replace("▁", " ").encode()
            self._pieces[token] = piece
        return piece

    def chat_prompt(self, messages: str | list[dict]) -> str:
        if not self.tokenizer.chat_template:
            raise SpecpairError(f"{self.name} has no chat template: drop --chat and write the "
                                "prompt in the model's format")
        import jinja2

        try:
            return self.tokenizer.apply_chat_template(
                as_messages(messages), tokenize=False,
                add_generation_prompt=True)
        except (jinja2.TemplateError, ValueError, TypeError) as e:
            raise SpecpairError(f"{self.name}: its chat template is broken ({e}): drop --chat "
                                "and write the prompt in the model's format") from None

    @torch.inference_mode()
    def eval(self, tokens: Sequence[int], *, all_logits: bool = True) -> np.ndarray:
        check_eval(len(self._tokens), len(tokens), self.n_ctx)
        ids = torch.tensor([list(tokens)], dtype=torch.long, device=self.device)
        try:
            out = self.model(input_ids=ids, use_cache=True, **{self._cache_arg: self._cache},
                             logits_to_keep=0 if all_logits else 1)
        except BaseException:
            # a forward stopped part-way may have grown some layers and not others: start
            # over from an empty cache rather than guess (the next sync re-evaluates)
            self.close()
            raise
        self._tokens.extend(tokens)
        return out.logits[0].float().cpu().numpy()

    def rewind(self, n_past: int) -> None:
        check_rewind(n_past, len(self._tokens))
        removed = len(self._tokens) - n_past
        if removed:
            self._cache.crop(-removed if self._crop_by_removal else n_past)
            del self._tokens[n_past:]

    def close(self) -> None:
        """Drop the cache (the weights may be shared with another backend)."""
        self._cache = DynamicCache()
        self._tokens = []

