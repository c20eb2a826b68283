"""The divergences a draft is trained on, as pure functions of tensors (one row per position).

The target's distribution at each position is kept compactly (distill/data.py): its `k` most
likely tokens' log-probabilities and the mass of the rest (`rest`, one bucket). Every
divergence here is computed over those k + 1 outcomes: exact for the kept tokens, and the rest
of the vocabulary collapsed into one outcome (for both distributions), which is what DistillSpec
and GKD do with a truncated teacher. Names as in the papers: `p` = target, `q` = draft.

- "kl": forward KL(p || q) over the k + 1 outcomes (mass-covering: the draft learns every token
  the target gives weight to). The default: see docs/DISTILL.md for the measurements.
- "tv": total variation 1/2 sum |p - q|: the quantity sampled acceptance is one minus
  (Leviathan et al.: alpha = 1 - TV(p, q)), so it is the direct objective, but its gradient is
  sparse (a sign), which trains slower on small data.
Either is added to `ce_weight` times the cross-entropy of the completion's own token (a small
anchor toward the text itself).
"""

from __future__ import annotations

import math

from ..errors import missing_extra

try:
    import torch
except ImportError as e:
    raise missing_extra("distill", e.name, "specpair distill") from None

LOSSES = ("kl", "tv")
DEFAULT_LOSS = "kl"
DEFAULT_CE_WEIGHT = 0.1
_EPS = 1e-8


def log_q_at(logq_all: torch.Tensor, ids: torch.Tensor) -> torch.Tensor:
    """log q at the target's token ids. The target may be wider than the draft by padding rows
    (a 7B Qwen has 152,064, the 0.5B draft 151,936): an id the draft lacks has q = 0 there,
    taken as log(eps) so that the divergence stays finite, as the decode loop pads a draft's q
    with zeros (`fit_width`)."""
    width = logq_all.shape[-1]
    inside = ids < width
    got = logq_all.gather(-1, ids.long().clamp_max(width - 1))
    return torch.where(inside, got, torch.full_like(got, math.log(_EPS)))


def _bucketed(draft_logits: torch.Tensor, ids: torch.Tensor, logp: torch.Tensor,
              rest: torch.Tensor):
    """(p over k + 1 outcomes, log q over the same), float32: [n, k + 1] each."""
    logq_all = torch.log_softmax(draft_logits.float(), dim=-1)
    logq_k = log_q_at(logq_all, ids)
    q_rest = (1.0 - logq_k.exp().sum(-1)).clamp_min(_EPS)
    p = torch.cat([logp.float().exp(), rest.float().clamp_min(0.0).unsqueeze(-1)], dim=-1)
    logq = torch.cat([logq_k, q_rest.log().unsqueeze(-1)], dim=-1)
    return p, logq, logq_all


def forward_kl(p: torch.Tensor, logq: torch.Tensor) -> torch.Tensor:
    """KL(p || q) per row; an outcome with p = 0 adds nothing."""
    logp = torch.where(p > 0, p.clamp_min(_EPS).log(), torch.zeros_like(p))
    return (p * (logp - logq)).sum(-1)


def total_variation(p: torch.Tensor, logq: torch.Tensor) -> torch.Tensor:
    """1/2 sum |p - q| per row."""
    return 0.5 * (p - logq.exp()).abs().sum(-1)


def distill_loss(draft_logits: torch.Tensor, ids: torch.Tensor, logp: torch.Tensor,
                 rest: torch.Tensor, tokens: torch.Tensor, *, loss: str = DEFAULT_LOSS,
                 ce_weight: float = DEFAULT_CE_WEIGHT) -> torch.Tensor:
    """The mean over positions of the divergence `loss` plus `ce_weight` x cross-entropy.

    draft_logits [n, V] at the positions that predict `tokens` [n]; ids, logp [n, k]: the
    target's top-k there; rest [n]: the target's mass outside them."""
    if loss not in LOSSES:
        raise ValueError(f"loss must be one of {LOSSES}, got {loss!r}")
    p, logq, logq_all = _bucketed(draft_logits, ids, logp, rest)
    main = forward_kl(p, logq) if loss == "kl" else total_variation(p, logq)
    ce = -log_q_at(logq_all, tokens.unsqueeze(-1)).squeeze(-1)
    return (main + ce_weight * ce).mean()


def divergences(draft_logits: torch.Tensor, ids: torch.Tensor, logp: torch.Tensor,
                rest: torch.Tensor) -> dict[str, float]:
    """Mean forward KL and TV over positions (for reports: held-out divergence)."""
    p, logq, _ = _bucketed(draft_logits, ids, logp, rest)
    return {"kl": float(forward_kl(p, logq).mean()), "tv": float(total_variation(p, logq).mean())}


__all__ = ["DEFAULT_CE_WEIGHT", "DEFAULT_LOSS", "LOSSES", "distill_loss", "divergences",
           "forward_kl", "log_q_at", "total_variation"]
