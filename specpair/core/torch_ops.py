"""Verification on torch tensors, on the device the logits are on: the same rules as
core/verify.py and the same transform as core/sampling.py, step by step, so that a GPU target's
[k+1, V] logits never cross to the host. What crosses: k+1 token ids (greedy), or k+1 ids and a
few probabilities (sampled). Imported only when a backend returns torch tensors.

Tested against the numpy reference on the CPU: greedy results identical, sampled distributions
identical (chi-square), with the same uniforms.
"""

from __future__ import annotations

import numpy as np
import torch

from .acceptance import AcceptanceRule
from .drafter import Draft
from .sampling import SamplingConfig


def transform_rows(logits: torch.Tensor, config: SamplingConfig) -> torch.Tensor:
    """[n, V] logits -> [n, V] float32 probabilities: temperature, softmax, top-k, top-p,
    min-p, renormalise (core/sampling.py's order)."""
    z = logits.float() / config.temperature
    p = torch.exp(z - z.max(dim=-1, keepdim=True).values)
    if 0 < config.top_k < p.shape[-1]:
        kth = torch.topk(p, config.top_k, dim=-1).values[..., -1:]
        p = torch.where(p >= kth, p, torch.zeros_like(p))
    if config.top_p < 1.0:
        total = p.sum(dim=-1, keepdim=True)
        values, order = torch.sort(p, dim=-1, descending=True, stable=True)
        before = torch.cumsum(values, dim=-1) - values  # mass of the more likely tokens
        keep_sorted = before < config.top_p * total
        keep = torch.zeros_like(keep_sorted).scatter(-1, order, keep_sorted)
        p = torch.where(keep, p, torch.zeros_like(p))
    if config.min_p > 0:
        p = torch.where(p >= config.min_p * p.max(dim=-1, keepdim=True).values, p,
                        torch.zeros_like(p))
    return p / p.sum(dim=-1, keepdim=True)


def sample_rows(p: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
    """Inverse-CDF samples of each row of p at the uniforms u [n] (token ids in order)."""
    cdf = torch.cumsum(p.double(), dim=-1)
    at = (u.double() * cdf[:, -1]).unsqueeze(-1)
    idx = torch.searchsorted(cdf, at, right=True).squeeze(-1)
    return idx.clamp_(max=p.shape[-1] - 1)


class TorchVerifier:
    """Exact verification on the device (the opt-in lossy rules run on the host: ops.py)."""

    def __init__(self, sampling: SamplingConfig, acceptance: AcceptanceRule) -> None:
        self.sampling, self.acceptance = sampling, acceptance

    def __call__(self, logits: torch.Tensor, draft: Draft, u: np.ndarray) -> tuple[int, int]:
        tokens = draft.tokens
        k = len(tokens)
        if self.sampling.greedy:
            choice = logits.argmax(dim=-1).tolist()  # k+1 integers cross to the host
            return _first_mismatch(choice, tokens)
        p = transform_rows(logits, self.sampling)
        device = p.device
        uu = torch.as_tensor(u, device=device)
        if draft.q is None:  # the target's own samples; accept while the draft agrees
            return _first_mismatch(sample_rows(p, uu[: k + 1, 0]).tolist(), tokens)
        q = torch.as_tensor(draft.q, device=device, dtype=torch.float32)
        idx = torch.as_tensor(tokens, device=device)
        rows = torch.arange(k, device=device)
        px, qx = p[rows, idx], q[rows, idx]
        accepted = (uu[:k, 0] * qx < px).tolist()
        n = next((i for i, ok in enumerate(accepted) if not ok), k)
        if n == k:
            return k, int(sample_rows(p[k:k + 1], uu[k:k + 1, 0])[0])
        residual = torch.clamp(p[n] - q[n], min=0.0)
        if float(residual.sum()) <= 0:  # only through rounding: p_n == q_n
            residual = p[n]
        return n, int(sample_rows(residual[None], uu[n:n + 1, 1])[0])


def _first_mismatch(target_tokens: list[int], draft_tokens: list[int]) -> tuple[int, int]:
    for i, x in enumerate(draft_tokens):
        if target_tokens[i] != int(x):
            return i, target_tokens[i]
    return len(draft_tokens), target_tokens[len(draft_tokens)]
