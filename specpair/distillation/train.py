"""Stage 2: the draft trained toward its target, on transformers' `Trainer` with a peft LoRA
(or every weight, `full`), the loss of loss.py over the target's kept distributions.

The Trainer brings what a training job needs and we do not write again: gradient accumulation,
the schedule, checkpoints with optimizer and RNG state (an interrupted run resumes from the
last one and gives the same weights as an uninterrupted run), and a callback to stop at a
deadline. What is ours: the batches (one sequence each: no padding), the loss, and the draft
loaded from its GGUF (transformers dequantizes it).
"""

from __future__ import annotations

import logging
import math
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from ..errors import ModelError, missing_extra

try:
    import torch
    from transformers import (
        AutoModelForCausalLM,
        PrinterCallback,
        Trainer,
        TrainerCallback,
        TrainingArguments,
    )
    from transformers.trainer_utils import get_last_checkpoint
except ImportError as e:
    raise missing_extra("distill", e.name, "specpair distill") from None

from .data import Scored
from .loss import DEFAULT_CE_WEIGHT, DEFAULT_LOSS, distill_loss

LORA_MODULES = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")
DEFAULT_RANK = 16
DEFAULT_EPOCHS = 2
DEFAULT_LR_LORA = 2e-4
DEFAULT_LR_FULL = 1e-5
DEFAULT_BATCH = 8  # sequences per optimizer step (gradient accumulation of one each)


@dataclass(frozen=True, kw_only=True)
class TrainConfig:
    full: bool = False  # every weight instead of a LoRA
    rank: int = DEFAULT_RANK
    alpha: float = 2.0 * DEFAULT_RANK
    learning_rate: float | None = None  # None: DEFAULT_LR_LORA or DEFAULT_LR_FULL
    epochs: float = DEFAULT_EPOCHS
    batch: int = DEFAULT_BATCH
    loss: str = DEFAULT_LOSS
    ce_weight: float = DEFAULT_CE_WEIGHT
    seed: int = 0
    save_every: int = 5  # optimizer steps between checkpoints (each one a resume point)

    @property
    def lr(self) -> float:
        if self.learning_rate is not None:
            return self.learning_rate
        return DEFAULT_LR_FULL if self.full else DEFAULT_LR_LORA

    def steps(self, n_sequences: int) -> int:
        return max(1, math.ceil(n_sequences * self.epochs / self.batch))


def bf16_ok(device: str = "cpu") -> bool:
    """Whether bf16 matmuls are fast here: CUDA with bf16, or a CPU with AVX-512 BF16 / AMX
    (oneDNN's own check); elsewhere bf16 is emulated and slower than float32."""
    if device.startswith("cuda"):
        return torch.cuda.is_available() and torch.cuda.is_bf16_supported()
    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        return False


def load_draft(path: str, *, dtype=None):
    """The draft as a transformers model: an HF folder, or a .gguf file (dequantized)."""
    spec = Path(path)
    kwargs = {"local_files_only": True, "dtype": dtype or torch.float32}
    if spec.suffix == ".gguf":
        # dense weights to train (transformers would otherwise keep the GGUF blocks packed,
        # for inference kernels that have no backward pass)
        from transformers import GgufConfig

        folder, kwargs["gguf_file"] = str(spec.parent), spec.name
        kwargs["quantization_config"] = GgufConfig(gguf_file=spec.name, dequantize=True)
    else:
        folder = str(spec)
    try:
        model = AutoModelForCausalLM.from_pretrained(folder, **kwargs)
    except (OSError, ValueError) as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise ModelError(f"transformers could not load the draft {path} to train it: "
                         f"{first}") from None
    if "gguf_file" in kwargs:
        # the weights are dequantized into ordinary tensors; what is left of "quantized" is
        # bookkeeping that makes the Trainer refuse the model and save_pretrained write a
        # GGUF quantization config into a folder of plain weights
        model.hf_quantizer = None
        model.is_quantized = False
        model.config.__dict__.pop("quantization_config", None)
    return model


class _Sequences(torch.utils.data.Dataset):
    def __init__(self, sequences: Sequence[Scored]) -> None:
        self.items = list(sequences)

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, i: int) -> dict:
        s = self.items[i]
        # the model reads the prompt and the completion but its last token; its last n rows
        # of logits then predict the n completion tokens
        tokens = torch.as_tensor(s.tokens[:-1], dtype=torch.long)
        return {"input_ids": tokens, "ids": torch.as_tensor(s.ids),
                "logp": torch.as_tensor(s.logp), "rest": torch.as_tensor(s.rest),
                "completion": torch.as_tensor(s.completion, dtype=torch.long)}


def _one(batch: list[dict]) -> dict:
    (item,) = batch  # one sequence per batch: nothing to pad
    return {"input_ids": item["input_ids"].unsqueeze(0), **{k: v for k, v in item.items()
                                                            if k != "input_ids"}}


class _DistillTrainer(Trainer):
    def __init__(self, *args, loss: str, ce_weight: float, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.distill_loss, self.ce_weight = loss, ce_weight
        self.model_accepts_loss_kwargs = False  # the Trainer scales by accumulation steps

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        n = inputs["completion"].shape[0]
        out = model(input_ids=inputs["input_ids"], logits_to_keep=n)
        loss = distill_loss(out.logits[0], inputs["ids"], inputs["logp"], inputs["rest"],
                            inputs["completion"], loss=self.distill_loss,
                            ce_weight=self.ce_weight)
        return (loss, out) if return_outputs else loss


class _Progress(TrainerCallback):
    def __init__(self, advance: Callable[[int], None], out_of_time: Callable[[], bool],
                 losses: list) -> None:
        self.advance, self.out_of_time, self.losses = advance, out_of_time, losses
        self.stopped = False

    def on_train_begin(self, args, state, control, **kwargs):
        self.advance(state.global_step)  # resumed: the steps already done

    def on_step_end(self, args, state, control, **kwargs):
        self.advance(1)
        if self.out_of_time() and state.global_step < state.max_steps:
            control.should_training_stop = control.should_save = True
            self.stopped = True

    def on_log(self, args, state, control, logs=None, **kwargs):
        if logs and "loss" in logs:
            self.losses.append({"step": state.global_step, "loss": float(logs["loss"])})


def prepare(model, config: TrainConfig):
    """The model to train: a fresh LoRA over `model` (seeded), or the model itself."""
    torch.manual_seed(config.seed)
    if config.full:
        model.requires_grad_(True)
        return model
    from peft import LoraConfig, get_peft_model

    present = {name.rsplit(".", 1)[-1] for name, _ in model.named_modules()}
    modules = [m for m in LORA_MODULES if m in present]
    if not modules:
        raise ModelError("the draft has none of the linear layers a LoRA targets "
                         f"({', '.join(LORA_MODULES)}): train it with {{full}}")
    lora = LoraConfig(r=config.rank, lora_alpha=config.alpha, lora_dropout=0.0,
                      target_modules=modules, bias="none", task_type="CAUSAL_LM")
    return get_peft_model(model, lora)


@dataclass
class Trained:
    model: object  # the peft model (LoRA) or the model (full)
    steps: int
    max_steps: int
    losses: list

    @property
    def done(self) -> bool:
        return self.steps >= self.max_steps


def train(model, sequences: Sequence[Scored], *, out: Path, config: TrainConfig,
          advance: Callable[[int], None] = lambda n: None,
          out_of_time: Callable[[], bool] = lambda: False) -> Trained:
    """Train `model` (prepared) on `sequences`; checkpoints in `out`, resumed from the last
    one there. Stops at the deadline with a checkpoint (Trained.done False)."""
    logging.getLogger("transformers").setLevel(logging.ERROR)
    warnings.filterwarnings("ignore", module="peft")  # "no config file": the GGUF has none
    max_steps = config.steps(len(sequences))
    device = next(model.parameters()).device.type
    args = TrainingArguments(
        output_dir=str(out), per_device_train_batch_size=1,
        gradient_accumulation_steps=config.batch, max_steps=max_steps,
        learning_rate=config.lr, lr_scheduler_type="cosine", warmup_steps=0,
        weight_decay=0.0, logging_steps=1, save_strategy="steps",
        save_steps=config.save_every, save_total_limit=2, seed=config.seed,
        data_seed=config.seed, report_to=[], disable_tqdm=True, use_cpu=device == "cpu",
        remove_unused_columns=False, dataloader_num_workers=0, bf16=False,
        save_only_model=False)
    losses: list = []
    progress = _Progress(advance, out_of_time, losses)
    trainer = _DistillTrainer(model=model, args=args, train_dataset=_Sequences(sequences),
                              data_collator=_one, callbacks=[progress], loss=config.loss,
                              ce_weight=config.ce_weight)
    trainer.remove_callback(PrinterCallback)  # progress goes to our bar, losses to losses.json
    last = get_last_checkpoint(str(out)) if out.is_dir() else None
    trainer.train(resume_from_checkpoint=last)
    return Trained(model, trainer.state.global_step, max_steps, losses)


__all__ = ["DEFAULT_EPOCHS", "DEFAULT_RANK", "LORA_MODULES", "TrainConfig", "Trained",
           "bf16_ok", "load_draft", "prepare", "train"]
