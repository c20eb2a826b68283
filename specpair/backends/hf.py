"""HF transformers / PyTorch models, on CPU or CUDA: a local model folder, a hub id already in
the local cache, or a GGUF file (transformers dequantizes it into torch; needs `accelerate`).

Install with `pip install 'specpair[hf]'`. No per-call waste, as in gpt-fast:
- the KV cache is transformers' `StaticCache`, allocated once for n_ctx tokens and indexed by
  position: rewinding moves the position counter (no copy, no crop of tensors);
- logits stay on the device as torch tensors: verification runs there (core/torch_ops.py) and
  only token ids cross to the host;
- with `compile` (CUDA only), the fixed shapes of decoding (one token; k + 1 tokens for each K
  used) run through `torch.compile(mode="reduce-overhead")`, i.e. CUDA graphs; the first call
  of each shape compiles, and that time is reported as a one-time cost (`compile_seconds`).
Models whose cache cannot be static (sliding-window or recurrent layers) keep a dynamic cache.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from pathlib import Path

from ..core.backend import as_messages, check_eval, check_rewind
from ..core.text import BYTE, CONTROL, NORMAL, USER_DEFINED, piece_bytes
from ..errors import InvalidOption, ModelError, missing_extra

try:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer, DynamicCache, StaticCache
    from transformers.cache_utils import StaticLayer
except ImportError as e:  # raised as a user error by load_backend
    raise missing_extra("hf", e.name, "the transformers engine") from None

from . import BackendConfig

_DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}
COMPILED_MAX_TOKENS = 65  # batches up to this size (K up to 64, plus the pending token)


def resolve_device(device: str) -> str:
    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise InvalidOption("{device} cuda, but PyTorch sees no CUDA GPU: use cpu or install "
                            "a CUDA build of torch")
    if device != "cpu" and not device.startswith("cuda"):
        raise InvalidOption(f"{{device}} must be cpu, cuda, cuda:N or auto, got {device!r}")
    return device


def _resolve_dtype(dtype: str, device: str):
    if dtype == "auto":  # float32 on CPU (no fast half kernels there), bfloat16 on GPUs
        return torch.float32 if device == "cpu" else torch.bfloat16
    if dtype not in _DTYPES:
        raise InvalidOption(f"{{dtype}} must be auto, {', '.join(_DTYPES)}; got {dtype!r}")
    return _DTYPES[dtype]


def device_name(device: str) -> str:
    if device.startswith("cuda"):
        return torch.cuda.get_device_name(torch.device(device))
    from .device import cpu_device

    return cpu_device()


def cache_keyword(forward) -> str:
    """The name a model's forward takes its KV cache by: `cache` in recent transformers 5.x,
    `past_key_values` in earlier 5.x releases (and 4.x). Passing the wrong one is silent (it
    lands in **kwargs unused, the cache is rebuilt every call and the logits are wrong), so it
    is read from the signature once, and a forward that takes neither is refused."""
    import inspect

    params = inspect.signature(forward).parameters
    for name in ("cache", "past_key_values"):
        if name in params:
            return name
    raise ModelError("this transformers model's forward takes no cache argument (neither "
                     "`cache` nor `past_key_values`): specpair cannot keep its KV cache")


class HFBackend:
    def __init__(self, path: str, config: BackendConfig, *, model=None, tokenizer=None) -> None:
        """Load from `path` (a folder, a cached hub id, or a .gguf file), or wrap an already
        loaded model and tokenizer (two backends can then share weights, each with its cache)."""
        self.path = path
        self.name = Path(path).name or path
        if config.n_seq > 1:
            raise InvalidOption("{parallel} > 1 needs the llama.cpp engine (a .gguf target): the "
                                "transformers engine decodes one request at a time")
        torch_device = resolve_device(config.device)
        if config.lora:
            raise InvalidOption("{draft_lora} is a llama.cpp adapter (GGUF): with the "
                                "transformers engine, give the merged folder that `specpair "
                                "distill` wrote (DIR/merged) as the draft instead")
        if config.compile and not torch_device.startswith("cuda"):
            raise InvalidOption("{compile} captures CUDA graphs: it needs a CUDA device")
        if config.threads:
            torch.set_num_threads(config.threads)
        if model is None:
            model, tokenizer = self._load(path, _resolve_dtype(config.dtype, torch_device))
        self.model = model.to(torch_device).eval()
        self.tokenizer = tokenizer
        self.torch_device = torch_device
        self.device = device_name(torch_device)
        cfg = self.model.config
        self.n_vocab = int(self.model.get_output_embeddings().weight.shape[0])
        self.n_ctx = min(config.n_ctx, int(getattr(cfg, "max_position_embeddings", config.n_ctx)))
        eos = {tokenizer.eos_token_id}
        gen = getattr(self.model, "generation_config", None)
        gen_eos = getattr(gen, "eos_token_id", None)
        eos |= set(gen_eos) if isinstance(gen_eos, list) else {gen_eos}
        self.eos_ids = frozenset(i for i in eos if i is not None)
        if not getattr(tokenizer, "is_fast", False):
            raise ModelError(f"{path}: only a slow (Python) tokenizer is available; specpair "
                             "needs a fast one: add the model's tokenizer.json to its folder")
        self._byte_level = "ByteLevel" in str(tokenizer.backend_tokenizer.decoder)
        self._special = set(tokenizer.all_special_ids)
        self._added = set(tokenizer.added_tokens_decoder)
        self._pieces: dict[int, bytes] = {}
        self._tokens: list[int] = []
        self._cache = self._new_cache()
        self.static_cache = isinstance(self._cache, StaticCache)
        self.compile = config.compile
        self.compile_seconds = 0.0  # one-time: the first call of each compiled shape
        self._compiled_shapes: set[int] = set()
        self._forward = self.model.forward
        self._cache_kw = cache_keyword(self.model.forward)
        if config.compile:
            torch._dynamo.config.cache_size_limit = max(
                torch._dynamo.config.cache_size_limit, COMPILED_MAX_TOKENS + 8)
            self._forward = torch.compile(self.model.forward, mode="reduce-overhead",
                                          dynamic=False)

    def _new_cache(self):
        cache = StaticCache(config=self.model.config, max_cache_len=self.n_ctx)
        if all(type(layer) is StaticLayer for layer in cache.layers):
            return cache
        return DynamicCache(config=self.model.config)  # sliding or recurrent layers

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
            raise ModelError(f"transformers could not load {path}: {first}") from None
        return model, tokenizer

    @property
    def n_past(self) -> int:
        return len(self._tokens)

    @property
    def tokens(self) -> list[int]:
        return self._tokens  # a view: the protocol says not to modify it

    def tokenize(self, text: str, *, add_bos: bool = True, special: bool = True) -> list[int]:
        return list(self.tokenizer(text, add_special_tokens=add_bos,
                                   split_special_tokens=not special)["input_ids"])

    def token_bytes(self, token: int) -> bytes:
        piece = self._pieces.get(token)
        if piece is None:
            text = self.tokenizer.convert_ids_to_tokens(token)
            if text is None:
                piece = b""
            else:
                kind = (CONTROL if token in self._special else USER_DEFINED
                        if token in self._added else NORMAL)
                if kind == NORMAL and not self._byte_level and text.startswith("<0x") \
                        and len(text) == 6:
                    kind = BYTE
                piece = piece_bytes(text, kind, byte_level=self._byte_level)
            self._pieces[token] = piece
        return piece

    def chat_prompt(self, messages: str | list[dict]) -> str:
        if not self.tokenizer.chat_template:
            raise ModelError(f"{self.name} has no chat template: pass chat=False and write the "
                             "prompt in the model's format")
        import jinja2

        try:
            return self.tokenizer.apply_chat_template(
                as_messages(messages), tokenize=False,
                add_generation_prompt=True)
        except (jinja2.TemplateError, ValueError, TypeError) as e:
            raise ModelError(f"{self.name}: its chat template is broken ({e}): pass chat=False "
                             "and write the prompt in the model's format") from None

    @torch.inference_mode()
    def eval(self, tokens: Sequence[int], *, all_logits: bool = True):
        """Logits as a torch tensor on the model's device (float32 rows [n, V])."""
        check_eval(len(self._tokens), len(tokens), self.n_ctx)
        n = len(tokens)
        ids = torch.tensor([list(tokens)], dtype=torch.long, device=self.torch_device)
        compiled = self.compile and n <= COMPILED_MAX_TOKENS and all_logits
        forward = self._forward if compiled else self.model.forward
        first = compiled and n not in self._compiled_shapes
        t0 = time.perf_counter()
        try:
            out = forward(input_ids=ids, use_cache=True, **{self._cache_kw: self._cache},
                          logits_to_keep=0 if all_logits else 1)
            logits = out.logits[0]
            if compiled:
                logits = logits.clone()  # CUDA graph outputs are overwritten by the next replay
        except BaseException:
            # a forward stopped part-way may have grown some layers and not others: start
            # over from an empty cache rather than guess (the next sync re-evaluates)
            self._reset()
            raise
        if first:
            torch.cuda.synchronize()
            self.compile_seconds += time.perf_counter() - t0
            self._compiled_shapes.add(n)
        self._tokens.extend(tokens)
        return logits

    def synchronize(self) -> None:
        if self.torch_device.startswith("cuda"):
            torch.cuda.synchronize(self.torch_device)

    def rewind(self, n_past: int) -> None:
        check_rewind(n_past, len(self._tokens))
        removed = len(self._tokens) - n_past
        if removed:
            self._cache.crop(-removed)  # static: the position counter moves back, nothing else
            del self._tokens[n_past:]

    def _reset(self) -> None:
        self._cache = self._new_cache()
        self._tokens = []

    def close(self) -> None:
        """Drop the cache (the weights may be shared with another backend)."""
        self._reset()
