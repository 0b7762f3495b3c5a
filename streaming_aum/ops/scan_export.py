"""Selective scan as a ``torch._higher_order_ops.scan`` loop, for ONNX export.

A Python ``for t in range(L)`` is frozen to the export-time length by the dynamo exporter (or
unrolled by the tracer), see ``docs/packaging.md`` section 6; the scan higher-order op becomes
one ONNX ``Scan`` node whose body is a single time step, so the graph runs at any length and
ONNX Runtime executes the recurrence in its own loop.

The step computes ``exp(dt_t * A)`` itself (nothing of size L x E x S is materialised). ``A`` is
threaded through the carry because the op's body may not capture tensors. Layouts as
``scan_reference`` (channels-last); the prototype op is private API, so torch is pinned and the
export tests run the graph at lengths not seen during export.
"""

from __future__ import annotations

import torch
from torch._higher_order_ops.scan import scan

from .scan_reference import softplus_like_cuda


def _step(carry: tuple[torch.Tensor, torch.Tensor],
          xs: tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]
          ) -> tuple[tuple[torch.Tensor, torch.Tensor], torch.Tensor]:
    h, A = carry  # (B, E, S), (E, S)
    dt, dtu, b, c = xs  # (B, E), (B, E), (B, S), (B, S)
    h = torch.exp(dt.unsqueeze(-1) * A) * h + dtu.unsqueeze(-1) * b.unsqueeze(1)
    y = (h * c.unsqueeze(1)).sum(-1)
    return (h, A.clone()), (y, h.clone())


def selective_scan_export(
    u: torch.Tensor,
    delta: torch.Tensor,
    A: torch.Tensor,
    B: torch.Tensor,
    C: torch.Tensor,
    D: torch.Tensor | None = None,
    delta_bias: torch.Tensor | None = None,
    *,
    h0: torch.Tensor | None = None,
    reverse: bool = False,
    state_at: int | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Same contract as ``selective_scan_reference``; float32 (or wider) throughout.

    ``state_at`` (forward only): return the state after that many steps instead of the last;
    it may be a symbolic size, so every step's state is kept (L x B x E x S) and indexed, with
    no branch in the graph (the streaming step graph uses this for its frontier).
    """
    dtype = torch.promote_types(u.dtype, torch.float32)
    d = delta.to(dtype) if delta_bias is None else delta.to(dtype) + delta_bias.to(dtype)
    dt = softplus_like_cuda(d)
    uf = u.to(dtype)
    dtu = dt * uf
    if h0 is None:
        h0 = torch.zeros(u.shape[0], A.shape[0], A.shape[1], dtype=dtype, device=u.device)
    xs = (dt.transpose(0, 1), dtu.transpose(0, 1), B.to(dtype).transpose(0, 1),
          C.to(dtype).transpose(0, 1))
    h0 = h0.to(dtype)
    (h_last, _), (ys, hs) = scan(_step, (h0, A.to(dtype)), xs, dim=0, reverse=reverse)
    if state_at is not None:
        h_last = torch.cat([h0.unsqueeze(0), hs], dim=0)[state_at]
    y = ys.transpose(0, 1)
    if D is not None:
        y = y + D.to(dtype) * uf
    return y.to(u.dtype), h_last
