"""`specpair deploy vllm|llama-server TARGET DRAFT`: check a pair, then print a ready command.

specpair does not run clusters; vLLM (tensor and pipeline parallel) and llama.cpp's llama-server
(layer split across GPUs, RPC across machines) do. What neither does is check that a pair lines up
and size the command from the models themselves. Sizes and dtypes come from config.json and the
safetensors files, or from the GGUF header, never from a file name.

Targets, as of November 2026:
- vLLM: `vllm serve --speculative-config JSON` with SpeculativeConfig's fields `method`, `model`,
  `num_speculative_tokens`, `draft_tensor_parallel_size` and `use_heterogeneous_vocab` (vLLM's
  TLI for drafts with another vocabulary, merged July 2026; greedy draft sampling only);
- llama.cpp's llama-server with the speculative flags of its `--spec-type` era (`--spec-type
  draft-simple`, `--spec-draft-model`, `--spec-draft-n-max`, `--spec-draft-n-min`,
  `--spec-draft-p-min`); it has no mode for drafts with another vocabulary.
"""

from __future__ import annotations

import json
import math
import shlex
from dataclasses import dataclass
from pathlib import Path

from ..errors import EXIT_INCOMPATIBLE, SpecpairError

VLLM_TARGET = "vLLM (SpeculativeConfig as of 2026-11: use_heterogeneous_vocab present)"
LLAMA_SERVER_TARGET = "llama.cpp llama-server (--spec-type flags, 2026)"
# The SpeculativeConfig fields this module may emit (vllm/config/speculative.py).
VLLM_SPECULATIVE_KEYS = frozenset({"method", "model", "num_speculative_tokens",
                                   "draft_tensor_parallel_size", "use_heterogeneous_vocab"})
WEIGHT_SHARE = 0.6  # of each GPU's memory for weights: the rest is KV cache and activations
# --gpu-memory is in GiB (what nvidia-smi shows as MiB / 1024; an "80 GB" H100 has ~79.6)
DTYPE_BYTES = {"float32": 4, "float16": 2, "bfloat16": 2, "float8_e4m3fn": 1, "int8": 1}


@dataclass(frozen=True)
class ModelInfo:
    path: str
    format: str  # "hf" or "gguf"
    bytes: int  # weights, as stored
    dtype: str
    params: int | None  # when config.json says enough to count them
    heads: int | None  # attention heads: tensor parallel must divide them

    @property
    def gib(self) -> float:
        return self.bytes / 2**30


def model_info(spec: str) -> ModelInfo:
    """Size and dtype of a model folder (config.json + safetensors) or a GGUF file."""
    path = Path(spec).expanduser()
    if path.is_file() and path.suffix == ".gguf":
        from ..models.gguf import read_metadata

        meta = read_metadata(str(path))
        arch = meta.get("general.architecture", "")
        file_type = meta.get("general.file_type")
        return ModelInfo(str(path), "gguf", path.stat().st_size,
                         f"gguf file_type {file_type}" if file_type is not None else "gguf",
                         meta.get("general.parameter_count"),
                         meta.get(f"{arch}.attention.head_count"))
    config_file = path / "config.json"
    if not config_file.is_file():
        raise SpecpairError(f"{spec}: give a model folder with config.json (vLLM) or a .gguf "
                            "file (llama-server)")
    try:
        config = json.loads(config_file.read_text())
    except (OSError, ValueError) as e:
        raise SpecpairError(f"cannot read {config_file}: {e}") from None
    config = config.get("text_config", config) | {k: v for k, v in config.items()
                                                   if k in ("torch_dtype", "dtype")}
    dtype = str(config.get("dtype") or config.get("torch_dtype") or "bfloat16")
    params = _count_params(config)
    stored = _safetensors_bytes(path)
    if stored is None:
        if params is None:
            raise SpecpairError(f"{spec}: no safetensors files and config.json lacks the "
                                "shapes to count parameters")
        stored = params * DTYPE_BYTES.get(dtype, 2)
    return ModelInfo(str(path), "hf", stored, dtype, params, config.get("num_attention_heads"))


def _count_params(c: dict) -> int | None:
    """Parameters of a decoder-only transformer from its config (embeddings, attention with
    grouped KV heads, a gated MLP, and the LM head unless tied)."""
    try:
        h, layers, vocab = c["hidden_size"], c["num_hidden_layers"], c["vocab_size"]
        inter = c["intermediate_size"]
        heads = c["num_attention_heads"]
    except KeyError:
        return None
    head_dim = c.get("head_dim") or h // heads
    kv = c.get("num_key_value_heads", heads)
    attn = h * heads * head_dim * 2 + h * kv * head_dim * 2
    experts = c.get("num_local_experts") or c.get("num_experts") or 1
    mlp = 3 * h * inter * experts
    embed = vocab * h * (1 if c.get("tie_word_embeddings") else 2)
    return embed + layers * (attn + mlp)


def _safetensors_bytes(folder: Path) -> int | None:
    index = folder / "model.safetensors.index.json"
    if index.is_file():
        try:
            return int(json.loads(index.read_text())["metadata"]["total_size"])
        except (OSError, ValueError, KeyError, TypeError):
            pass
    files = list(folder.glob("*.safetensors"))
    return sum(f.stat().st_size for f in files) if files else None


@dataclass(frozen=True)
class Plan:
    engine: str
    command: list[str]
    notes: list[str]
    target: ModelInfo
    draft: ModelInfo
    verdict: str

    def shell(self) -> str:
        return " \\\n  ".join(_join_pairs(self.command))

    def to_dict(self) -> dict:
        return {"engine": self.engine, "command": self.command, "shell": self.shell(),
                "notes": self.notes, "verdict": self.verdict,
                "target": vars(self.target), "draft": vars(self.draft)}


def _join_pairs(argv: list[str]) -> list[str]:
    """Shell-quoted, one option (and its value) per line."""
    out: list[str] = []
    for arg in argv:
        if out and not arg.startswith("-") and out[-1].startswith("-") and " " not in out[-1]:
            out[-1] += " " + shlex.quote(arg)
        else:
            out.append(shlex.quote(arg))
    return out


def _verdict(target: str, draft: str) -> str:
    from ..tokenizers.compare import compare
    from ..tokenizers.info import load_tokenizer_info

    return compare(load_tokenizer_info(target), load_tokenizer_info(draft)).verdict


def _refuse(message: str) -> SpecpairError:
    return SpecpairError(f"cannot deploy: {message}", exit_code=EXIT_INCOMPATIBLE)


def plan_vllm(target: str, draft: str, *, gpus: int, gpu_memory_gb: float, k: int,
              sampled: bool) -> Plan:
    from ..tokenizers.compare import INCOMPATIBLE, TEXT_LEVEL

    t, d = model_info(target), model_info(draft)
    if t.format != "hf" or d.format != "hf":
        raise _refuse("vLLM serves model folders (config.json + safetensors); for GGUF files "
                      "use `specpair deploy llama-server`")
    _check_sizes(t, d)
    verdict = _verdict(target, draft)
    notes = []
    spec: dict = {"method": "draft_model", "model": d.path, "num_speculative_tokens": k}
    if verdict in (TEXT_LEVEL, INCOMPATIBLE):
        if sampled:
            raise _refuse("the tokenizers do not line up, and vLLM's heterogeneous-vocabulary "
                          "mode (TLI) supports greedy draft sampling only: serve greedy "
                          "(--temperature 0), or pick a draft of the target's family")
        spec["use_heterogeneous_vocab"] = True
        notes.append("tokenizers differ: use_heterogeneous_vocab (vLLM's TLI) drafts over the "
                     "token strings both share; acceptance is lower than a same-family draft's")
    per_gpu = gpu_memory_gb * 2**30 * WEIGHT_SHARE
    need = math.ceil(t.bytes / per_gpu)
    tp = 1
    while tp < need and tp < 8:
        tp *= 2
    if t.heads:
        while tp > 1 and t.heads % tp:
            tp //= 2  # vLLM needs the attention heads divisible by the TP size
    pp = max(1, math.ceil(need / tp))
    if tp * pp > gpus:
        raise _refuse(f"the target's weights ({t.gib:.1f} GiB) need {tp * pp} GPUs of "
                      f"{gpu_memory_gb:g} GiB (at {WEIGHT_SHARE:.0%} of each for weights); "
                      f"--gpus is {gpus}")
    draft_tp = 1 if d.bytes <= per_gpu else tp
    if d.bytes > per_gpu * draft_tp:
        raise _refuse(f"the draft ({d.gib:.1f} GiB) does not fit {draft_tp} GPU(s)")
    spec["draft_tensor_parallel_size"] = draft_tp
    assert set(spec) <= VLLM_SPECULATIVE_KEYS
    command = ["vllm", "serve", t.path, "--tensor-parallel-size", str(tp)]
    if pp > 1:
        command += ["--pipeline-parallel-size", str(pp)]
        notes.append(f"pipeline parallel over {pp} stages of {tp} GPUs (across nodes: run it "
                     "under Ray, see vLLM's distributed serving docs)")
    command += ["--speculative-config", json.dumps(spec)]
    notes.insert(0, f"target {t.gib:.1f} GiB {t.dtype}"
                    + (f" (~{t.params / 1e9:.1f}B parameters)" if t.params else "")
                    + f", draft {d.gib:.1f} GiB {d.dtype}; {tp * pp} of {gpus} GPUs used")
    return Plan("vllm", command, notes, t, d, verdict)


def plan_llama_server(target: str, draft: str, *, gpus: int, gpu_memory_gb: float, k: int,
                      sampled: bool, p_min: float = 0.7) -> Plan:
    from ..tokenizers.compare import INCOMPATIBLE, TEXT_LEVEL

    t, d = model_info(target), model_info(draft)
    if t.format != "gguf" or d.format != "gguf":
        raise _refuse("llama-server serves GGUF files; for model folders use `specpair deploy "
                      "vllm`")
    _check_sizes(t, d)
    verdict = _verdict(target, draft)
    if verdict in (TEXT_LEVEL, INCOMPATIBLE):
        raise _refuse("the tokenizers do not line up, and llama-server's draft-simple needs the "
                      "target's vocabulary (it has no re-tokenizing mode): run  specpair check "
                      f"{target} {draft}")
    total = (t.bytes + d.bytes) / 2**30
    if gpus and total > gpus * gpu_memory_gb * WEIGHT_SHARE:
        raise _refuse(f"target and draft weights ({total:.1f} GiB) do not fit {gpus} GPU(s) of "
                      f"{gpu_memory_gb:g} GiB; add GPUs, or machines with --rpc")
    command = ["llama-server", "-m", t.path, "--spec-type", "draft-simple",
               "--spec-draft-model", d.path, "--spec-draft-n-max", str(k),
               "--spec-draft-n-min", "0", "--spec-draft-p-min", f"{p_min:g}"]
    notes = [f"target {t.gib:.1f} GiB, draft {d.gib:.1f} GiB ({t.dtype})"]
    if gpus:
        command += ["-ngl", "all", "--spec-draft-ngl", "all"]
        if gpus > 1:
            command += ["--split-mode", "layer"]
            notes.append(f"layers split over {gpus} GPUs; across machines add --rpc HOST:PORT "
                         "for each rpc-server")
    else:
        notes.append("no GPU: CPU only (on a 2-core CPU a model draft rarely pays: see "
                     "`specpair advise`)")
    if sampled:
        notes.append("sampled requests are verified exactly by llama-server's speculative path")
    return Plan("llama-server", command, notes, t, d, verdict)


def _check_sizes(t: ModelInfo, d: ModelInfo) -> None:
    if d.bytes >= t.bytes:
        raise _refuse(f"the draft ({d.gib:.2f} GiB) is not smaller than the target "
                      f"({t.gib:.2f} GiB): it cannot make decoding faster")
