"""RMSNorm with AuM's fused add-norm semantics (float32-or-wider residual stream)."""

from __future__ import annotations

import torch
from torch import nn


class RMSNorm(nn.Module):
    """``y = x * (mean(x^2) + eps)^-1/2 * weight``, no bias, computed in x's dtype.

    Callers pass the float32 (or float64) residual; the official Triton kernel likewise
    normalises in float32 and writes the output in the dtype of the incoming hidden states.
    """

    def __init__(self, dim: int, eps: float = 1e-5) -> None:
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        w = self.weight.to(x.dtype)
        return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + self.eps) * w
