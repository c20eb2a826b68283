"""llama.cpp through llama-cpp-python's low-level C API, for GGUF files.

The high-level `llama_cpp.Llama` keeps a scores buffer of n_batch (or n_ctx) x n_vocab floats
(300 MB to 2.5 GB for a 152k vocabulary) and hides which positions produce logits. Here each
`eval` asks llama.cpp for exactly the rows it needs and copies them out.

GPUs: with a llama-cpp-python built for CUDA, Metal, Vulkan, ... (`llama_supports_gpu_offload`)
every layer is offloaded by default (`gpu_layers`, llama.cpp's meaning of the count); which
device each layer went to is read from llama.cpp's own load log, and named in `device`.
"""

from __future__ import annotations

import ctypes
import re
from collections import deque
from collections.abc import Sequence
from pathlib import Path

import jinja2
import llama_cpp
import numpy as np
from llama_cpp.llama_chat_format import Jinja2ChatFormatter

from ..core.backend import EvalPart, as_messages, check_eval, check_rewind
from ..core.text import piece_bytes
from ..errors import EngineError, InvalidOption, ModelError
from ..models.adapter import check_adapter
from ..models.gguf import read_metadata
from . import ALL_LAYERS, BackendConfig
from .device import cpu_device, usable_cpus

# llama.cpp logs to stderr by default; keep its last lines to explain failures instead, and
# during a load, the lines that say where each layer went.
_LOG: deque[str] = deque(maxlen=8)
_LOAD: list[str] = []
_GGML_WARN, _GGML_ERROR = 3, 4
_ASSIGNED = re.compile(r"layer\s+\d+ assigned to device (\S+?),")
_USING = re.compile(r"using device (\S+) \(([^)]*)\)")


@llama_cpp.llama_log_callback
def _log_callback(level: int, text: bytes, user_data: ctypes.c_void_p) -> None:
    line = text.decode("utf-8", errors="replace").strip()
    if not line:
        return
    if level in (_GGML_WARN, _GGML_ERROR):
        _LOG.append(line)
    if "assigned to device" in line or "using device" in line:
        _LOAD.append(line)


llama_cpp.llama_log_set(_log_callback, ctypes.c_void_p(0))
llama_cpp.llama_backend_init()


def _last_log() -> str:
    return f" (llama.cpp: {_LOG[-1]})" if _LOG else ""

N_BATCH = 512  # tokens per llama_decode call; longer inputs (prompts) are split


def _tokenize(vocab, text: str, add_bos: bool, special: bool = True) -> list[int]:
    data = text.encode("utf-8")
    n_max = len(data) + 8
    buf = (llama_cpp.llama_token * n_max)()
    n = llama_cpp.llama_tokenize(vocab, data, len(data), buf, n_max, add_bos, special)
    if n < 0:  # cannot happen with one token per byte plus specials, but be exact
        buf = (llama_cpp.llama_token * -n)()
        n = llama_cpp.llama_tokenize(vocab, data, len(data), buf, -n, add_bos, special)
    return list(buf[:n])


def supports_gpu_offload() -> bool:
    """Whether this llama-cpp-python was built with a GPU backend (CUDA, Metal, Vulkan, ...)."""
    return bool(llama_cpp.llama_supports_gpu_offload())


def gpu_layers_for(requested: int | None) -> int:
    """llama.cpp's n_gpu_layers for a requested count: all by default where the build can
    offload, else 0; a count on a build that cannot offload is the user's mistake."""
    if requested is None:
        return ALL_LAYERS if supports_gpu_offload() else 0
    if requested != 0 and not supports_gpu_offload():
        raise InvalidOption(
            f"{{gpu_layers}} {'all' if requested == ALL_LAYERS else requested}: this "
            "llama-cpp-python cannot offload to a GPU (built for the CPU only): reinstall it with "
            "CMAKE_ARGS=-DGGML_CUDA=on (NVIDIA) or -DGGML_METAL=on (Apple), or pass 0")
    return requested


def placement(lines: Sequence[str]) -> tuple[int, int, str | None]:
    """(layers on a GPU, layers in all, the GPU's name) from llama.cpp's load log."""
    devices = [m.group(1) for line in lines if (m := _ASSIGNED.search(line))]
    names = {m.group(1): m.group(2) for line in lines if (m := _USING.search(line))}
    on_gpu = [d for d in devices if d != "CPU"]
    gpu = names.get(on_gpu[0], on_gpu[0]) if on_gpu else None
    return len(on_gpu), len(devices), gpu


def device_label(gpu: str | None, offloaded: int, layers: int) -> str:
    """Where a model runs: the GPU's name when every layer is on it, the CPU's when none is,
    and both when it is split: a split model's costs are neither device's, and the CPU layers
    make it slow when another process takes the cores (busy-run detection reads "CPU")."""
    if not gpu:
        return cpu_device()
    if offloaded < layers:
        return f"{gpu} + {cpu_device()} ({offloaded}/{layers} layers on the GPU)"
    return gpu


class LlamaCppVocab:
    """Only a GGUF file's tokenizer (llama.cpp's vocab_only load: no weights, well under a
    second), for `specpair check`'s round-trip probe."""

    def __init__(self, path: str) -> None:
        params = llama_cpp.llama_model_default_params()
        params.vocab_only = True
        self._model = llama_cpp.llama_model_load_from_file(path.encode(), params)
        if not self._model:
            raise ModelError(f"llama.cpp could not read the tokenizer of {path}" + _last_log())
        self._vocab = llama_cpp.llama_model_get_vocab(self._model)

    def tokenize(self, text: str, *, add_bos: bool = False, special: bool = True) -> list[int]:
        return _tokenize(self._vocab, text, add_bos, special)

    def __del__(self) -> None:
        if getattr(self, "_model", None):
            llama_cpp.llama_model_free(self._model)
            self._model = None


def _backend_key(key: str) -> bool:
    """The header fields the backend reads (the token strings for the one decoder)."""
    return key in ("general.architecture", "tokenizer.ggml.tokens", "tokenizer.ggml.token_type",
                   "tokenizer.ggml.model", "tokenizer.chat_template") \
        or key.endswith(".context_length")


class LlamaCppBackend:
    def __init__(self, path: str, config: BackendConfig) -> None:
        # a clear error for files that are not GGUF at all; the merges are not needed
        meta = read_metadata(path, only=_backend_key)
        if config.lora:  # before the weights load: an adapter for another base is refused
            check_adapter(config.lora, path)
        self.path = path
        self.name = Path(path).name
        self.lora = config.lora
        arch = meta.get("general.architecture", "?")
        n_ctx_train = int(meta.get(f"{arch}.context_length", config.n_ctx))

        model_params = llama_cpp.llama_model_default_params()
        self.gpu_layers = gpu_layers_for(config.gpu_layers)
        model_params.n_gpu_layers = self.gpu_layers
        _LOG.clear()
        _LOAD.clear()
        self._model = llama_cpp.llama_model_load_from_file(path.encode(), model_params)
        self.offloaded_layers, self.n_layers, gpu = placement(_LOAD)
        self.device = device_label(gpu, self.offloaded_layers, self.n_layers)
        if not self._model:
            raise ModelError(
                f"llama.cpp could not load {path} (truncated, corrupt, or architecture {arch!r} "
                "unsupported by this llama-cpp-python): re-download the file or upgrade"
                + _last_log()
            )
        self._vocab = llama_cpp.llama_model_get_vocab(self._model)
        self.n_vocab = llama_cpp.llama_vocab_n_tokens(self._vocab)
        self.n_ctx = min(config.n_ctx, n_ctx_train)

        threads = config.threads or usable_cpus()
        ctx_params = llama_cpp.llama_context_default_params()
        # n_ctx is each sequence's: the context holds n_seq of them. One unified KV cache
        # (llama.cpp's kv_unified) keeps a ragged batch of several sequences' rows one pass
        # (with a stream per sequence it is cut into several: llama.cpp PR #14363)
        self.n_seq = config.n_seq
        ctx_params.n_ctx = self.n_ctx * self.n_seq
        ctx_params.n_seq_max = self.n_seq
        ctx_params.kv_unified = self.n_seq > 1
        ctx_params.n_batch = ctx_params.n_ubatch = N_BATCH
        ctx_params.n_threads = ctx_params.n_threads_batch = threads
        ctx_params.no_perf = True
        self._ctx = llama_cpp.llama_init_from_model(self._model, ctx_params)
        if not self._ctx:
            self.close()
            what = (f"{self.n_seq} sequences of {self.n_ctx} tokens" if self.n_seq > 1
                    else f"{self.n_ctx} tokens")
            raise EngineError(f"llama.cpp could not create a context of {what} for {path}: "
                              "pass a smaller {n_ctx}" + (" or {parallel}" if self.n_seq > 1
                                                           else ""))
        if config.lora:
            self._apply_lora(config.lora)
        self._memory = llama_cpp.llama_get_memory(self._ctx)
        self._batch = llama_cpp.llama_batch_init(N_BATCH, 0, 1)
        self._seqs: list[list[int]] = [[] for _ in range(self.n_seq)]  # what each cache holds
        self._pieces: dict[int, bytes] = {}
        # token strings and types from the header, for the one token->bytes decoder
        self._strings = meta.get("tokenizer.ggml.tokens") or []
        self._types = meta.get("tokenizer.ggml.token_type") or []
        self._byte_level = meta.get("tokenizer.ggml.model") == "gpt2"
        self.eos_ids = frozenset(
            i for i in range(self.n_vocab) if llama_cpp.llama_vocab_is_eog(self._vocab, i)
        )
        self._chat_template = meta.get("tokenizer.chat_template")
        self._formatter: tuple[str, Jinja2ChatFormatter] | None = None  # (its template, it)

    def _apply_lora(self, lora: str) -> None:
        """Load the adapter and set it on the context at scale 1 (llama.cpp multiplies by the
        adapter's alpha / rank, as peft does). The model frees its adapters with itself."""
        adapter = llama_cpp.llama_adapter_lora_init(self._model, lora.encode())
        adapters = (llama_cpp.llama_adapter_lora_p_ctypes * 1)(adapter)
        scales = (ctypes.c_float * 1)(1.0)
        if not adapter or llama_cpp.llama_set_adapters_lora(self._ctx, adapters, 1, scales):
            self.close()
            raise ModelError(f"llama.cpp could not apply the LoRA {lora} to {self.path}"
                             + _last_log())
        self.name = f"{self.name} + {Path(lora).name}"

    # -- the Backend protocol: sequence 0 --------------------------------------------------
    @property
    def n_past(self) -> int:
        return len(self._seqs[0])

    @property
    def tokens(self) -> list[int]:
        return self._seqs[0]  # a view: the protocol says not to modify it

    def tokenize(self, text: str, *, add_bos: bool = True, special: bool = True) -> list[int]:
        return _tokenize(self._vocab, text, add_bos, special)

    def token_bytes(self, token: int) -> bytes:
        piece = self._pieces.get(token)
        if piece is None:
            if 0 <= token < len(self._strings):
                kind = self._types[token] if token < len(self._types) else 1
                piece = piece_bytes(self._strings[token], kind, byte_level=self._byte_level)
            else:
                piece = b""
            self._pieces[token] = piece
        return piece

    def chat_prompt(self, messages: str | list[dict]) -> str:
        if not self._chat_template:
            raise ModelError(f"{self.name} has no chat template in its metadata: pass "
                             "chat=False and write the prompt in the model's format")
        try:
            template = self._chat_template
            if self._formatter is None or self._formatter[0] != template:
                # compiling the template costs ~18 ms: once per model and template
                bos = self.token_bytes(llama_cpp.llama_vocab_bos(self._vocab)).decode(
                    errors="replace")
                eos = self.token_bytes(llama_cpp.llama_vocab_eos(self._vocab)).decode(
                    errors="replace")
                self._formatter = (template, Jinja2ChatFormatter(
                    template, eos_token=eos, bos_token=bos, add_generation_prompt=True))
            return self._formatter[1](messages=as_messages(messages)).prompt
        except jinja2.TemplateError as e:
            raise ModelError(f"{self.name}: its chat template is broken ({e}): pass "
                             "chat=False and write the prompt in the model's format") from None
        except (ValueError, TypeError) as e:
            # llama-cpp-python's templates call raise_exception as a ValueError: a template
            # that refuses this conversation (Gemma's: two user turns in a row), the caller's
            # to fix, not a fault of ours
            raise InvalidOption(f"{self.name}'s chat template refused the conversation: {e}"
                                ) from None

    def eval(self, tokens: Sequence[int], *, all_logits: bool = True) -> np.ndarray:
        return self.eval_many([EvalPart(0, tokens, all_logits)])[0]

    def synchronize(self) -> None:
        pass  # eval copies the logits out of llama.cpp, which waits for the device

    def rewind(self, n_past: int) -> None:
        self.rewind_seq(0, n_past)

    # -- MultiSequence: n_seq caches in one context ----------------------------------------
    def seq_tokens(self, seq: int) -> list[int]:
        return self._seqs[seq]

    def eval_many(self, parts: Sequence[EvalPart]) -> list[np.ndarray]:
        """Every part's rows in one batch, cut into llama_decode calls of at most N_BATCH rows
        (a long prompt spans several); each row at its own sequence's next position."""
        if len({p.seq for p in parts}) != len(parts):
            raise ValueError("eval_many takes one part per sequence")
        for p in parts:
            check_eval(len(self._seqs[p.seq]), len(p.tokens), self.n_ctx)
        # (part, position in the part, its token, whether its logits are read)
        rows = [(i, j, int(t), p.all_logits or j == len(p.tokens) - 1)
                for i, p in enumerate(parts) for j, t in enumerate(p.tokens)]
        starts = [len(self._seqs[p.seq]) for p in parts]
        out: list[list[np.ndarray]] = [[] for _ in parts]
        try:
            for lo in range(0, len(rows), N_BATCH):
                self._decode(rows[lo:lo + N_BATCH], parts, starts, out)
        except BaseException:
            for p, start in zip(parts, starts):  # the caches never hold rows we do not know of
                self.rewind_seq(p.seq, start)
            raise
        return [np.concatenate(o) if len(o) > 1 else o[0] for o in out]

    def _decode(self, chunk: list, parts: Sequence[EvalPart], starts: list[int],
                out: list[list[np.ndarray]]) -> None:
        b = self._batch
        b.n_tokens = len(chunk)
        for r, (i, j, token, logits) in enumerate(chunk):
            b.token[r] = token
            b.pos[r] = starts[i] + j
            b.n_seq_id[r] = 1
            b.seq_id[r][0] = parts[i].seq
            b.logits[r] = logits
        status = llama_cpp.llama_decode(self._ctx, b)
        if status != 0:
            raise EngineError(f"llama.cpp failed to evaluate {len(chunk)} tokens (status "
                              f"{status}): pass a smaller {{n_ctx}} or {{draft_tokens}}")
        wanted: dict[int, int] = {}  # part: rows whose logits were asked for (batch order)
        for i, _, _, logits in chunk:
            if logits:
                wanted[i] = wanted.get(i, 0) + 1
        if wanted:
            ptr = llama_cpp.llama_get_logits(self._ctx)
            rows = np.ctypeslib.as_array(ptr, shape=(sum(wanted.values()), self.n_vocab))
            k = 0
            for i, n in wanted.items():  # a part's rows are contiguous in the batch
                out[i].append(rows[k:k + n].copy())
                k += n
        for i, _, token, _ in chunk:
            self._seqs[parts[i].seq].append(token)

    def rewind_seq(self, seq: int, n_past: int) -> None:
        tokens = self._seqs[seq]
        check_rewind(n_past, len(tokens))
        if not llama_cpp.llama_memory_seq_rm(self._memory, seq, n_past, -1):
            raise EngineError(f"{self.name}: llama.cpp cannot rewind this model's cache "
                              "(recurrent architecture?), so it cannot verify drafts")
        del tokens[n_past:]

    def copy_seq(self, src: int, dst: int, n: int) -> None:
        check_rewind(n, len(self._seqs[src]))
        if src == dst:
            self.rewind_seq(dst, n)
            return
        llama_cpp.llama_memory_seq_rm(self._memory, dst, 0, -1)
        llama_cpp.llama_memory_seq_cp(self._memory, src, dst, 0, n)
        self._seqs[dst][:] = self._seqs[src][:n]

    def close(self) -> None:
        if getattr(self, "_batch", None) is not None:
            llama_cpp.llama_batch_free(self._batch)
            self._batch = None
        if getattr(self, "_ctx", None):
            llama_cpp.llama_free(self._ctx)
            self._ctx = None
        if getattr(self, "_model", None):
            llama_cpp.llama_model_free(self._model)
            self._model = None

    def __del__(self) -> None:
        self.close()
