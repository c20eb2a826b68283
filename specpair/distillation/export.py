"""Stage 3: the trained draft as a llama.cpp LoRA adapter (GGUF), and as a merged HF folder.

The adapter is written with the `gguf` package's `GGUFWriter` and named with its
`TensorNameMap` (HF module names to llama.cpp's `blk.N.attn_q`...), the layout llama.cpp's
own convert_lora_to_gguf.py writes: `NAME.weight.lora_a` [r, in] and `.lora_b` [out, r],
float32, `general.type` "adapter", `adapter.lora.alpha`; llama.cpp scales B A by alpha / r
as peft does. So the draft stays the quantized GGUF it was, plus a few MB.

A full fine-tune has no low-rank factors: its weight changes are truncated to rank r by SVD
(the best rank-r approximation), and the adapter says so (`specpair.rank_of`).

The adapter records the base draft (name, size, sha256) and the target it was trained toward
(models/adapter.py checks the first wherever it loads).
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from ..errors import ModelError, missing_extra
from ..models.adapter import (
    BASE_NAME,
    BASE_SHA256,
    BASE_SIZE,
    TARGET_NAME,
    TARGET_SHA256,
    sha256_of,
)
from ..models.gguf import read_metadata

try:
    import gguf
    import torch
except ImportError as e:
    raise missing_extra("distill", e.name, "specpair distill") from None

# architectures whose converter writes q/k as transformers holds them (llama's permutes them
# for its rope layout: its LoRA would need the same permutation, not written here)
UNPERMUTED = ("qwen2", "qwen3", "gemma3", "phi3", "starcoder2")


def _arch(name: str):
    for arch, arch_name in gguf.MODEL_ARCH_NAMES.items():
        if arch_name == name:
            return arch
    raise ModelError(f"the gguf package does not know architecture {name!r}: upgrade gguf")


def lora_factors(peft_model) -> Iterator[tuple[str, torch.Tensor, torch.Tensor]]:
    """(module name as transformers has it, A [r, in], B [out, r]) of every LoRA layer."""
    for name, module in peft_model.named_modules():
        if hasattr(module, "lora_A") and "default" in getattr(module, "lora_A", {}):
            a = module.lora_A["default"].weight.detach().float().cpu()
            b = module.lora_B["default"].weight.detach().float().cpu()
            yield name.removeprefix("base_model.model."), a, b


def svd_factors(base: dict[str, torch.Tensor], tuned: dict[str, torch.Tensor], rank: int
                ) -> Iterator[tuple[str, torch.Tensor, torch.Tensor]]:
    """The best rank-`rank` factors (A, B, scale 1) of each linear weight's change."""
    for key, w in tuned.items():
        if not key.endswith(".weight") or w.dim() != 2 or ".layers." not in key:
            continue
        delta = (w.float() - base[key].float())
        if not torch.any(delta):
            continue
        u, s, vh = torch.linalg.svd(delta, full_matrices=False)
        r = min(rank, s.numel())
        root = s[:r].sqrt()
        yield key.removesuffix(".weight"), root[:, None] * vh[:r], u[:, :r] * root[None, :]


def write_adapter(path: Path, factors, *, base: str, target: str, alpha: float | None,
                  base_sha256: str, target_sha256: str, rank_of: str = "lora") -> int:
    """Write the adapter; `alpha` None: factors carry their own scale (alpha = r).
    Returns the number of adapted weights."""
    meta = read_metadata(base, only=("general.architecture", "general.name"))
    arch_name = str(meta.get("general.architecture"))
    if arch_name not in UNPERMUTED:
        raise ModelError(f"exporting a LoRA for a {arch_name} model is not supported yet "
                         f"(supported: {', '.join(UNPERMUTED)}): use the merged folder "
                         "DIR/merged with the transformers engine")
    factors = list(factors)
    if not factors:
        raise ModelError("the trained draft has no adapted weights to export")
    n_blocks = 1 + max(int(name.split(".layers.")[1].split(".")[0])
                       for name, _, _ in factors if ".layers." in name)
    names = gguf.get_tensor_name_map(_arch(arch_name), n_blocks)
    rank = factors[0][1].shape[0]
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    writer = gguf.GGUFWriter(str(tmp), arch_name)
    try:
        writer.add_type(gguf.GGUFType.ADAPTER)
        writer.add_string(gguf.Keys.Adapter.TYPE, "lora")
        writer.add_float32(gguf.Keys.Adapter.LORA_ALPHA, float(rank if alpha is None
                                                              else alpha))
        writer.add_string("general.name", f"{meta.get('general.name', 'draft')} distilled")
        writer.add_string(BASE_NAME, Path(base).name)
        writer.add_uint64(BASE_SIZE, os.path.getsize(base))
        writer.add_string(BASE_SHA256, base_sha256)
        writer.add_string(TARGET_NAME, Path(target).name)
        writer.add_string(TARGET_SHA256, target_sha256)
        writer.add_string("specpair.rank_of", rank_of)
        for name, a, b in factors:
            gguf_name = names.get_name(name)
            if gguf_name is None:
                raise ModelError(f"no llama.cpp tensor name for {name}: this architecture's "
                                 "map in the gguf package lacks it")
            writer.add_tensor(f"{gguf_name}.weight.lora_a", a.numpy().astype(np.float32))
            writer.add_tensor(f"{gguf_name}.weight.lora_b", b.numpy().astype(np.float32))
        writer.write_header_to_file()
        writer.write_kv_data_to_file()
        writer.write_tensors_to_file()
        writer.close()
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return len(factors)


def run_stage(out: Path, model, draft_path: str, target_path: str,
              *, full: bool, rank: int, alpha: float, merged: bool, adapter: Path) -> None:
    """Stage 3: DIR/draft-lora.gguf (and DIR/merged for a LoRA)."""
    import torch

    from .train import load_draft

    if full:
        tuned = model if model is not None else load_draft(str(out / "merged"))
        base = load_draft(draft_path).state_dict()
        factors = svd_factors(base, tuned.state_dict(), rank)
        alpha, rank_of = None, "full fine-tune, truncated by SVD"
    else:
        if model is None:
            from peft import PeftModel

            model = PeftModel.from_pretrained(load_draft(draft_path, dtype=torch.float32),
                                              str(out / "adapter"))
        # read the factors before merging: merge_and_unload folds the LoRA layers away
        factors, alpha, rank_of = list(lora_factors(model)), alpha, "lora"
        if merged:  # before the adapter: the adapter's file is what marks the stage done
            _merge(out, model, draft_path)
    write_adapter(adapter, factors, base=draft_path, target=target_path,
                  alpha=alpha, base_sha256=sha256_of(draft_path),
                  target_sha256=sha256_of(target_path), rank_of=rank_of)


def _merge(out: Path, model, draft_path: str) -> None:
    """DIR/merged: the LoRA merged into the draft, with the draft's tokenizer (an HF folder
    the transformers engine loads: --draft DIR/merged)."""
    folder = out / "merged"
    tmp = out / "merged.partial"
    shutil.rmtree(tmp, ignore_errors=True)
    model.merge_and_unload().save_pretrained(str(tmp))
    save_tokenizer(draft_path, tmp)
    shutil.rmtree(folder, ignore_errors=True)
    tmp.rename(folder)


def save_tokenizer(draft_path: str, folder: Path) -> None:
    from transformers import AutoTokenizer

    p = Path(draft_path)
    AutoTokenizer.from_pretrained(str(p.parent), gguf_file=p.name).save_pretrained(str(folder))


__all__ = ["UNPERMUTED", "lora_factors", "run_stage", "save_tokenizer", "svd_factors",
           "write_adapter"]
