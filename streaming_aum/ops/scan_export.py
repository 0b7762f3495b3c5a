"""Selective scan as a ``torch._higher_order_ops.scan`` loop, for ONNX export.

A Python ``for t in range(L)`` is frozen to the export-time length by the dynamo exporter (or
unrolled by the tracer), see ``docs/packaging.md`` section 6; the scan higher-order op becomes
one ONNX ``Scan`` node whose body is a single time step, so the graph runs at any length and
ONNX Runtime executes the recurrence in its own loop.

ONNX Runtime executes a ``Scan`` body node by node at every step, with a fixed cost per node,
so the body is kept minimal (``h = dA*h + dBu; y = sum(h*C)``): the decays ``exp(dt*A)`` and
inputs ``dt*u*B`` are computed before the loop as whole (L, B, E, S) tensors by single
vectorised ops (memory L x B x E x S floats per scan). Layouts as ``scan_reference``
(channels-last); the prototype op is private API, so torch is pinned and the export tests run
the graph at lengths not seen during export.
"""

from __future__ import annotations

import torch
from torch._higher_order_ops.scan import scan

from .scan_reference import softplus_like_cuda


def _step(h: torch.Tensor, xs: tuple[torch.Tensor, torch.Tensor, torch.Tensor]
          ) -> tuple[torch.Tensor, torch.Tensor]:
    dA, dBu, c = xs  # (B, E, S), (B, E, S), (B, 1, S)
    h = dA * h + dBu
    return h, (h * c).sum(-1)


def _step_with_states(h: torch.Tensor, xs: tuple[torch.Tensor, torch.Tensor, torch.Tensor]
                      ) -> tuple[torch.Tensor, tuple[torch.Tensor, torch.Tensor]]:
    h, y = _step(h, xs)
    return h, (y, h.clone())


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
    h0 = h0.to(dtype)
    dt_t, dtu_t = dt.transpose(0, 1).unsqueeze(-1), dtu.transpose(0, 1).unsqueeze(-1)
    dA = torch.exp(dt_t * A.to(dtype))  # (L, B, E, S)
    dBu = dtu_t * B.to(dtype).transpose(0, 1).unsqueeze(2)  # (L, B, E, S)
    xs = (dA, dBu, C.to(dtype).transpose(0, 1).unsqueeze(2))
    if state_at is None:
        h_last, ys = scan(_step, h0, xs, dim=0, reverse=reverse)
    else:
        h_last, (ys, hs) = scan(_step_with_states, h0, xs, dim=0, reverse=reverse)
        h_last = torch.cat([h0.unsqueeze(0), hs], dim=0)[state_at]
    y = ys.transpose(0, 1)
    if D is not None:
        y = y + D.to(dtype) * uf
    return y.to(u.dtype), h_last
