"""The engines: one file per engine, each implementing the core's `Backend` protocol
(core/backend.py), and `load_backend` to open a model from a spec.

llamacpp.py  GGUF files through llama-cpp-python's C API (CPU, or GPU offload where the build
             has it: CUDA, Metal, ...)
hf.py        transformers / PyTorch, CPU or CUDA (the [hf] extra); logits stay on the device
device.py    which CPU or GPU a model runs on (reports and cost keys)

Engine imports are lazy: importing this package loads no engine.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from ..core.backend import (
    Backend,
    EvalPart,
    MultiSequence,
    as_messages,
    check_eval,
    check_rewind,
    common_prefix,
    sequence,
    sync,
)
from ..errors import InvalidOption

DEFAULT_N_CTX = 4096
MAX_SEQUENCES = 64  # llama.cpp's own limit (LLAMA_MAX_SEQ) is 256; more slots than this is a typo
DTYPES = ("auto", "float32", "float16", "bfloat16")  # transformers' weights
ALL_LAYERS = -1  # gpu_layers: offload every layer (llama.cpp's meaning of a count >= layers)


@dataclass(frozen=True, kw_only=True)
class BackendConfig:
    """How one model is opened. Every field is an engine option of the API and the CLI."""

    n_ctx: int = DEFAULT_N_CTX
    threads: int | None = None  # None: the CPUs this process may use
    device: str = "auto"  # transformers: cpu, cuda, cuda:N or auto
    dtype: str = "auto"  # transformers: float32, bfloat16, float16 or auto
    # llama.cpp: layers to offload to the GPU; None = all where the build supports offload
    # (CUDA, Metal, Vulkan, ...), else 0; ALL_LAYERS = all
    gpu_layers: int | None = None
    compile: bool = False  # transformers on CUDA: capture CUDA graphs for the fixed shapes
    lora: str | None = None  # llama.cpp: a LoRA adapter GGUF applied at scale 1 (distill)
    # llama.cpp: sequences in one context (serve --parallel), each with n_ctx tokens of its own
    n_seq: int = 1

    def __post_init__(self) -> None:
        if self.n_ctx < 16:
            raise InvalidOption(f"{{n_ctx}} must be >= 16, got {self.n_ctx}")
        if not 1 <= self.n_seq <= MAX_SEQUENCES:
            raise InvalidOption(f"{{parallel}} must be between 1 and {MAX_SEQUENCES}, got "
                                f"{self.n_seq}")
        if self.threads is not None and self.threads < 1:
            raise InvalidOption(f"{{threads}} must be >= 1, got {self.threads}")
        # the spellings are checked here, before any model loads (the engine that reads them
        # checks what the machine has: a CUDA GPU)
        if not re.fullmatch(r"auto|cpu|cuda(:\d+)?", self.device):
            raise InvalidOption(f"{{device}} must be cpu, cuda, cuda:N or auto, got "
                                f"{self.device!r}")
        if self.dtype not in DTYPES:
            raise InvalidOption(f"{{dtype}} must be {', '.join(DTYPES)}; got {self.dtype!r}")
        if self.gpu_layers is not None and self.gpu_layers < ALL_LAYERS:
            raise InvalidOption(f"{{gpu_layers}} must be a count >= 0 or 'all', got "
                                f"{self.gpu_layers}")


def parse_gpu_layers(value: str | int | None) -> int | None:
    """'all', a count, or None (the default) as BackendConfig.gpu_layers."""
    if value is None or isinstance(value, int):
        return value
    if value.strip().lower() == "all":
        return ALL_LAYERS
    try:
        n = int(value)
    except ValueError:
        raise InvalidOption(f"{{gpu_layers}} must be a count of layers or 'all', got "
                            f"{value!r}") from None
    if n < 0:
        raise InvalidOption(f"{{gpu_layers}} must be >= 0 or 'all', got {n}")
    return n


def load_backend(spec: str, config: BackendConfig) -> Backend:
    """Open a model from a spec (see `models.resolve_model`): a .gguf file or a model name runs
    on llama.cpp, a folder on transformers; `gguf:SPEC` / `hf:SPEC` choose the engine."""
    from ..models import resolve_model

    engine, path = resolve_model(spec)
    if engine == "hf":
        from .hf import HFBackend  # raises a one-line error without the [hf] extra

        return HFBackend(path, config)
    from .llamacpp import LlamaCppBackend

    return LlamaCppBackend(path, config)


__all__ = ["ALL_LAYERS", "Backend", "BackendConfig", "DEFAULT_N_CTX", "EvalPart",
           "MAX_SEQUENCES", "MultiSequence", "as_messages", "check_eval", "check_rewind",
           "common_prefix", "load_backend", "parse_gpu_layers", "sequence", "sync"]
