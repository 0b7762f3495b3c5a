"""Fused residual add + RMSNorm for the float32 CPU inference path (numba), one call per layer.

AuM's residual stream (``AudioMamba.run_layers``) does, per layer, ``r = r + h`` and then
``RMSNorm(r) = r * rsqrt(mean(r^2) + eps) * w``: five or six torch ops (add, pow, mean, add,
rsqrt, two multiplies). On a streaming hop's 56 tokens each op costs more in dispatch than in
arithmetic (~55 us per norm against ~8 us here, measured on the default model); on a long
offline sequence the one pass saves the intermediate tensors' memory traffic.

Numerics: the sum of squares runs in ``LANES`` = 16 float32 partial sums (element ``d`` goes
to partial ``d % 16``, each accumulated by explicit fused multiply-adds in order), added up in
a fixed order at the end; then ``inv = 1 / sqrt(sum / D + eps)`` and
``out = (r * inv) * w``, the order of ``RMSNorm.forward``. PyTorch's ``mean`` sums in another
order, so the two differ by float32 rounding (tested to 2e-6 relative against it and
against float64). The partial sums are an explicit constant-width loop over a flat scratch
buffer and every multiply-add is an explicit ``fma_f32``, so the result does not depend on
where the arrays lie in memory (the lesson of ``pointwise_cpu.POINTWISE_FASTMATH``; tested).
"""

from __future__ import annotations

import numpy as np
import torch

from .scan_fused_cpu import HAVE_NUMBA, LANES

if HAVE_NUMBA:
    from numba import njit

    from .pointwise_cpu import POINTWISE_FASTMATH
    from .scan_fused_cpu import fma_f32, prefer_512_bit_vectors

    @njit(fastmath=POINTWISE_FASTMATH, cache=True, nogil=True, error_model="numpy")
    def _add_rmsnorm_kernel(x, h, add, w, eps, res_out, out):  # pragma: no cover - compiled
        """Rows of x, h, res_out, out: (n, D) f32 C-contiguous; w (D,) f32.
        ``res_out = x + h`` (``add``) or ``x``; ``out = RMSNorm(res_out) * w``."""
        prefer_512_bit_vectors()
        n, D = x.shape
        full = D - D % LANES
        acc = np.zeros(LANES, np.float32)
        for i in range(n):
            if add:
                for d in range(D):
                    res_out[i, d] = x[i, d] + h[i, d]
            else:
                for d in range(D):
                    res_out[i, d] = x[i, d]
            for j in range(LANES):
                acc[j] = 0.0
            for d0 in range(0, full, LANES):
                for j in range(LANES):
                    v = res_out[i, d0 + j]
                    acc[j] = fma_f32(v, v, acc[j])
            for d in range(full, D):
                v = res_out[i, d]
                acc[d - full] = fma_f32(v, v, acc[d - full])
            total = np.float32(0.0)
            for j in range(LANES):
                total += acc[j]
            inv = np.float32(1.0) / np.sqrt(total / np.float32(D) + eps)
            for d in range(D):
                out[i, d] = (res_out[i, d] * inv) * w[d]


def add_rmsnorm_fused(x: torch.Tensor, hidden: torch.Tensor | None, weight: torch.Tensor,
                      eps: float) -> tuple[torch.Tensor, torch.Tensor]:
    """``r = x + hidden`` (or ``x`` when ``hidden`` is None) and ``RMSNorm(r)``, one kernel.

    x, hidden: float32 CPU (..., D) of one shape (made contiguous if they are not); weight:
    (D,). No autograd (inference only). Returns ``(r, normed)``, new contiguous tensors of
    x's shape."""
    if not HAVE_NUMBA:  # pragma: no cover
        raise RuntimeError("add_rmsnorm_fused needs numba; use model.norm.RMSNorm")
    D = x.shape[-1]
    for name, t in (("x", x), ("hidden", hidden)):
        if t is not None and (t.dtype != torch.float32 or t.device.type != "cpu"):
            raise ValueError(f"{name} must be a float32 CPU tensor, got {t.dtype} on {t.device}")
    if hidden is not None and hidden.shape != x.shape:
        raise ValueError(f"hidden {tuple(hidden.shape)} does not match x {tuple(x.shape)}")
    if tuple(weight.shape) != (D,):
        raise ValueError(f"weight has shape {tuple(weight.shape)}; expected ({D},)")
    xs = x.detach().contiguous().view(-1, D)
    hs = xs if hidden is None else hidden.detach().contiguous().view(-1, D)
    w = weight.detach()
    if w.dtype != torch.float32 or not w.is_contiguous():
        w = w.float().contiguous()
    res = torch.empty_like(xs)
    out = torch.empty_like(xs)
    _add_rmsnorm_kernel(xs.numpy(), hs.numpy(), hidden is not None, w.numpy(),
                        np.float32(eps), res.numpy(), out.numpy())
    return res.view(x.shape), out.view(x.shape)


__all__ = ["add_rmsnorm_fused"]
