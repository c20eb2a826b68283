"""`specpair distill`: the four stages over one folder, each resumable from what it holds.

    DIR/distill.json        the pair and the options (a DIR is for one pair and one recipe)
    DIR/split.json          which prompts train and which are held out
    DIR/data/train/*.npz    stage 1: completions and the target's top-k at each position
    DIR/data/held/*.npz     held-out: the target's greedy and sampled completions
    DIR/train/              stage 2: the Trainer's checkpoints (resume points)
    DIR/adapter/            the trained LoRA (peft), or DIR/merged/ for --full
    DIR/draft-lora.gguf     stage 3: the llama.cpp adapter (--draft-lora)
    DIR/merged/             the draft with the LoRA merged in, for the transformers engine
    DIR/eval.json           stage 4: acceptance before and after, costs, predicted speedups
    DIR/acceptance.png      acceptance by position before and after

Every file is written whole or not at all (a temporary file renamed), so an interrupted run
(Ctrl-C, --max-minutes, a full disk) leaves DIR consistent, and the same command resumes.
"""

from __future__ import annotations

import errno
import json
import shutil
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

from ..core.files import write_atomic
from ..errors import IncompatiblePair, InvalidOption, SpecpairError
from ..extras import require_extra
from ..models import resolve_model
from .data import DEFAULT_MAX_NEW_TOKENS, DEFAULT_TOP_K, Job, load_all, make
from .prompts import DEFAULT_HELD_OUT, Prompt, read_prompts, split

DATA_MODES = ("target", "draft", "mixed")
DEFAULT_EVAL_TEMPERATURE = 0.7
FORMAT = 1
ADAPTER_FILE = "draft-lora.gguf"


class Stages:
    """How a run reports its progress: one call per stage (its total work and unit), which
    returns the function to call as work is done. The default reports nothing."""

    def stage(self, name: str, total: int, unit: str) -> Callable[[int], None]:
        return lambda n: None

    def note(self, text: str) -> None:
        pass


@dataclass(frozen=True, kw_only=True)
class DistillConfig:
    data: str = "target"  # target | draft | mixed
    temperature: float = 0.0  # the training completions' (0: greedy)
    logprobs: int = DEFAULT_TOP_K  # the target's top log-probabilities kept per position
    max_new_tokens: int = DEFAULT_MAX_NEW_TOKENS
    held_out: float = DEFAULT_HELD_OUT
    eval_temperature: float = DEFAULT_EVAL_TEMPERATURE  # sampled acceptance
    full: bool = False
    rank: int = 16
    alpha: float = 32.0
    learning_rate: float | None = None
    epochs: float = 2.0
    batch: int = 8
    loss: str = "kl"
    ce_weight: float = 0.1
    seed: int = 0
    merged: bool = True  # also write DIR/merged (an HF folder)

    def __post_init__(self) -> None:
        from .loss import LOSSES

        if self.data not in DATA_MODES:
            raise InvalidOption(f"{{data}} must be one of {', '.join(DATA_MODES)}, got "
                                f"{self.data!r}")
        if self.loss not in LOSSES:
            raise InvalidOption(f"{{loss}} must be one of {', '.join(LOSSES)}, got "
                                f"{self.loss!r}")
        for name, value, low in (("logprobs", self.logprobs, 1), ("max_new_tokens",
                                 self.max_new_tokens, 1), ("rank", self.rank, 1),
                                 ("batch", self.batch, 1)):
            if value < low:
                raise InvalidOption(f"{{{name}}} must be >= {low}, got {value}")
        if not 0 < self.held_out < 1:
            raise InvalidOption(f"{{held_out}} must be between 0 and 1 (a fraction of the "
                                f"prompts), got {self.held_out}")
        if self.epochs <= 0 or self.temperature < 0 or self.eval_temperature <= 0:
            raise InvalidOption("{epochs} and {eval_temperature} must be > 0, "
                                "{temperature} >= 0")

    def recipe(self) -> dict:
        """What DIR's contents depend on (a resumed run must ask for the same)."""
        return {k: v for k, v in asdict(self).items() if k != "merged"}


@dataclass
class Outcome:
    out: Path
    complete: bool
    stage: str  # the last stage reached
    report: dict = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)


def _file(path: str) -> dict:
    p = Path(path)
    return {"name": p.name, "size": p.stat().st_size if p.is_file() else None}


def _manifest(out: Path, target: str, draft: str, config: DistillConfig) -> None:
    """Write DIR's manifest, or refuse a DIR made for another pair or recipe."""
    want = {"format": FORMAT, "target": _file(target), "draft": _file(draft),
            "recipe": config.recipe()}
    path = out / "distill.json"
    if path.exists():
        try:
            have = json.loads(path.read_text())
        except ValueError:
            raise InvalidOption(f"{path} is damaged: pass another {{out}}") from None
        for side in ("target", "draft"):
            if have.get(side) != want[side]:
                raise InvalidOption(
                    f"{out} was made for {side} {have.get(side, {}).get('name')}, not "
                    f"{want[side]['name']}: pass another {{out}} for this pair")
        for key, value in want["recipe"].items():
            if have.get("recipe", {}).get(key) != value:
                raise InvalidOption(
                    f"{out} was made with {{{key}}} {have.get('recipe', {}).get(key)}; this "
                    f"run asks for {value}: pass the same options to resume, or another "
                    "{out}")
        return
    out.mkdir(parents=True, exist_ok=True)
    write_atomic(path, json.dumps(want, indent=2) + "\n")


def _check_vocabulary(target: str, draft: str) -> None:
    from ..tokenizers.compare import COMPATIBLE, IDENTICAL, check_pair

    verdict = check_pair(target, draft).verdict
    if verdict not in (IDENTICAL, COMPATIBLE):
        raise IncompatiblePair(
            f"distillation needs the same vocabulary: `specpair check` says the tokenizers "
            f"are {verdict}, so the draft cannot learn the target's distribution token by "
            "token: choose a draft of the target's family")


def _split(out: Path, prompts: list[Prompt], fraction: float) -> tuple[list[Prompt],
                                                                         list[Prompt]]:
    train, held = split(prompts, fraction)
    path = out / "split.json"
    if path.exists():  # the split that earlier stages used (the file may have grown)
        have = json.loads(path.read_text())
        by_id = {p.id: p for p in prompts}
        train = [by_id[i] for i in have["train"] if i in by_id]
        held = [by_id[i] for i in have["held"] if i in by_id]
    else:
        write_atomic(path, json.dumps({"train": [p.id for p in train],
                                       "held": [p.id for p in held]}) + "\n")
    return train, held


class Deadline:
    def __init__(self, minutes: float | None) -> None:
        self.end = None if minutes is None else time.monotonic() + 60 * minutes

    def __call__(self) -> bool:
        return self.end is not None and time.monotonic() >= self.end


def run(*, target: str, draft: str, prompts: str, out: str,
        config: DistillConfig | None = None, max_minutes: float | None = None,
        threads: int | None = None, n_ctx: int = 2048,
        stages: Stages | None = None) -> Outcome:
    """Distil `draft` toward `target` on the prompts of a JSONL file, in DIR `out`."""
    # every package of the extra, before an hour of work (stage 4 imports scipy at its end)
    require_extra("distill", "specpair distill")
    try:
        return _run(target=target, draft=draft, prompts=prompts, out=Path(out),
                    config=config or DistillConfig(), deadline=Deadline(max_minutes),
                    threads=threads, n_ctx=n_ctx, stages=stages or Stages())
    except OSError as e:
        if e.errno in (errno.ENOSPC, errno.EDQUOT):
            raise SpecpairError(f"no space left on the disk of {out}: free some and run the "
                                "same command again (it resumes where it stopped)") from None
        raise


def _run(*, target: str, draft: str, prompts: str, out: Path, config: DistillConfig,
         deadline: Deadline, threads: int | None, n_ctx: int, stages: Stages) -> Outcome:
    from ..pair import load

    if max(1, config.max_new_tokens) + 16 > n_ctx:
        raise InvalidOption(f"{{max_new_tokens}} {config.max_new_tokens} does not fit "
                            f"{{n_ctx}} {n_ctx}")
    all_prompts = read_prompts(prompts)
    target_path, draft_path = resolve_model(target)[1], resolve_model(draft)[1]
    if resolve_model(draft)[0] != "gguf":
        raise InvalidOption("{draft} must be a GGUF file or a named model: the adapter is "
                            "exported for llama.cpp")
    _check_vocabulary(target, draft)
    split(all_prompts, config.held_out)  # every input is checked before DIR is written to
    _manifest(out, target_path, draft_path, config)
    train_prompts, held_prompts = _split(out, all_prompts, config.held_out)
    kinds = {p.id: p.kind for p in all_prompts}
    outcome = Outcome(out, False, "data")

    # -- 1. data ----------------------------------------------------------------------------
    tpair = load(target, draft="auto", n_ctx=n_ctx, threads=threads)
    dpair = load(draft, draft="none", n_ctx=n_ctx, threads=threads) \
        if config.data != "target" else None
    jobs = _data_jobs(out, tpair, dpair, train_prompts, held_prompts, config)
    advance = stages.stage("data", len(jobs), "sequences")
    left = make(jobs, tpair.target, k=config.logprobs, advance=advance, out_of_time=deadline)
    if left:
        return _stopped(outcome, stages, f"{left} sequences still to make")
    verify_prompt = jobs[0].prompt

    # -- 2. training ------------------------------------------------------------------------
    outcome.stage = "train"
    trained_dir = out / ("merged" if config.full else "adapter")
    model = None
    if not (trained_dir / "done").exists():
        model, left_steps = _train(out, draft_path, config, stages, deadline)
        if left_steps:
            return _stopped(outcome, stages, f"{left_steps} training steps still to go")
        _save_trained(model, trained_dir, draft_path, full=config.full)
    # -- 3. export --------------------------------------------------------------------------
    outcome.stage = "export"
    adapter = out / ADAPTER_FILE
    if not export_done(out, config):
        done = stages.stage("export", 1, "files")
        from .export import run_stage as export

        export(out, model, draft_path, target_path, full=config.full, rank=config.rank,
               alpha=config.alpha, merged=config.merged, adapter=adapter)
        done(1)
    # -- 4. evaluation ----------------------------------------------------------------------
    outcome.stage = "eval"
    eval_file = out / "eval.json"
    if not eval_file.exists():
        from .evaluate import plot
        from .evaluate import run_stage as evaluate

        report = evaluate(out, tpair, draft_path, adapter, held_prompts, kinds, verify_prompt,
                          eval_temperature=config.eval_temperature,
                          advance=stages.stage("eval", len(held_prompts), "prompts"),
                          out_of_time=deadline, n_ctx=n_ctx, threads=threads)
        if report is None:
            return _stopped(outcome, stages, "the evaluation still to finish")
        write_atomic(eval_file, json.dumps(report, indent=2) + "\n")
        plot(report, out / "acceptance.png")
    tpair.close()
    if dpair is not None:
        dpair.close()
    outcome.report = json.loads(eval_file.read_text())
    outcome.complete, outcome.stage = True, "done"
    return outcome


def export_done(out: Path, config: DistillConfig) -> bool:
    """Stage 3 is done when its last file is written: the adapter, which export writes after
    DIR/merged (a merge interrupted before it is therefore retried). A DIR from before that
    order may hold the adapter without the merged folder: that counts as not done too."""
    merged = config.merged and not config.full
    return (out / ADAPTER_FILE).exists() and (not merged or (out / "merged").exists())


def record_losses(path: Path, losses: list[dict]) -> None:
    """Add this session's training losses to DIR/losses.json: a resumed run's steps replace
    the ones at and after its first step (the steps it redid), earlier sessions' stay."""
    old: list[dict] = []
    if path.exists():
        try:
            old = json.loads(path.read_text())
        except ValueError:
            old = []
    first = min((e["step"] for e in losses), default=None)
    kept = [e for e in old if first is None or e["step"] < first]
    write_atomic(path, json.dumps(kept + losses) + "\n")


def _stopped(outcome: Outcome, stages: Stages, what: str) -> Outcome:
    outcome.notes.append(f"stopped at the time limit during {outcome.stage} ({what}): run "
                         "the same command again to resume")
    stages.note(outcome.notes[-1])
    return outcome


def _data_jobs(out: Path, tpair, dpair, train: list[Prompt], held: list[Prompt],
               config: DistillConfig) -> list[Job]:
    from ..core.prompt import encode_prompt

    def completer(pair, temperature: float):
        def complete(tokens: list[int], seed: int) -> list[int]:
            gen = pair.generate(tokens=tokens, max_tokens=config.max_new_tokens,
                                temperature=temperature, seed=seed)
            return list(gen.tokens)
        return complete

    (out / "data" / "train").mkdir(parents=True, exist_ok=True)
    (out / "data" / "held").mkdir(parents=True, exist_ok=True)
    by_target = completer(tpair, config.temperature)
    sampled = completer(tpair, config.eval_temperature)
    by_draft = completer(dpair, config.temperature) if dpair is not None else None
    jobs = []
    for n, p in enumerate(train):
        tokens = encode_prompt(tpair.target, p.as_messages(), chat=True)
        if config.data in ("target", "mixed"):
            jobs.append(Job(out / "data" / "train" / f"{p.id}.target.npz", tokens, by_target,
                            config.seed + n))
        if by_draft is not None:
            jobs.append(Job(out / "data" / "train" / f"{p.id}.draft.npz", tokens, by_draft,
                            config.seed + n))
    for n, p in enumerate(held):
        tokens = encode_prompt(tpair.target, p.as_messages(), chat=True)
        jobs.append(Job(out / "data" / "held" / f"{p.id}.greedy.npz", tokens,
                        completer(tpair, 0.0), 0))
        jobs.append(Job(out / "data" / "held" / f"{p.id}.sampled.npz", tokens, sampled,
                        10_000 + config.seed + n))
    return jobs


def _train(out: Path, draft_path: str, config: DistillConfig, stages: Stages,
           deadline: Deadline):
    from .train import TrainConfig, bf16_ok, load_draft, prepare, train

    sequences = load_all(sorted((out / "data" / "train").glob("*.npz")))
    if not sequences:
        raise InvalidOption("no training sequence has a completion: give more prompts, or "
                            "a larger {max_new_tokens}")
    tc = TrainConfig(full=config.full, rank=config.rank, alpha=config.alpha,
                     learning_rate=config.learning_rate, epochs=config.epochs,
                     batch=config.batch, loss=config.loss, ce_weight=config.ce_weight,
                     seed=config.seed)
    import torch

    # bf16 weights where this CPU multiplies bf16 natively: a LoRA's base is frozen, so its
    # precision is the GGUF's already; a full fine-tune keeps float32 (the optimizer's steps
    # are smaller than bf16's resolution)
    dtype = torch.bfloat16 if (bf16_ok() and not config.full) else torch.float32
    stages.note(f"loading the draft into transformers ({dtype}, dequantized from its GGUF)")
    model = prepare(load_draft(draft_path, dtype=dtype), tc)
    advance = stages.stage("train", tc.steps(len(sequences)), "steps")
    result = train(model, sequences, out=out / "train", config=tc, advance=advance,
                   out_of_time=deadline)
    record_losses(out / "losses.json", result.losses)
    return model, result.max_steps - result.steps


def _save_trained(model, folder: Path, draft_path: str, *, full: bool) -> None:
    """The trained weights, whole: a peft adapter folder, or (full) an HF model folder with
    the draft's tokenizer."""
    tmp = folder.with_name(folder.name + ".partial")
    shutil.rmtree(tmp, ignore_errors=True)
    model.save_pretrained(str(tmp))
    if full:
        from .export import save_tokenizer

        save_tokenizer(draft_path, tmp)
    (tmp / "done").write_text(json.dumps({"draft": Path(draft_path).name}) + "\n")
    shutil.rmtree(folder, ignore_errors=True)
    tmp.rename(folder)


__all__ = ["ADAPTER_FILE", "DATA_MODES", "DistillConfig", "Outcome", "Stages", "export_done",
           "record_losses", "run"]
