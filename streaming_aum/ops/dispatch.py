"""The one place that decides how the selective scan and the causal conv run.

Backends (``set_scan_backend`` / env ``STREAMING_AUM_SCAN``, default ``auto``):

* ``reference``: ``scan_reference``, per-step torch ops; any dtype/device, differentiable.
* ``fused``: ``scan_fused_cpu``, the numba kernel; float32 CPU tensors. With gradients it runs
  ``scan_fused_grad`` (the same forward kernel plus a numba backward kernel): CPU training.
* ``cuda``: mamba-ssm's kernel for CUDA tensors (differentiable); initial states by linearity.
* ``export``: ``scan_export``, a scan higher-order op that becomes one ONNX ``Scan`` node (any
  length); selected while exporting, also runs eagerly.
* ``auto``: ``cuda`` for CUDA tensors when mamba-ssm imports, ``fused`` for float32 CPU
  (inference and training), ``reference`` otherwise (float64, CUDA without mamba-ssm).

Every backend takes an initial state and returns the final state, so streaming can carry it.
``fused_inference_path`` tells the mixer when it may skip ``selective_scan`` and call the fused
kernel directly (float32 CPU inference under ``auto``/``fused``): the same decision as above.
"""

from __future__ import annotations

import contextlib
import os
from typing import Iterator

import torch

from ..errors import ConfigError
from . import scan_cuda, scan_fused_cpu, scan_fused_grad
from .scan_reference import (anticausal_conv1d_reference, causal_conv1d_reference,
                             selective_scan_reference, softplus_like_cuda)

SCAN_BACKENDS: tuple[str, ...] = ("auto", "reference", "fused", "cuda", "export")
_backend = os.environ.get("STREAMING_AUM_SCAN", "auto")
if _backend not in SCAN_BACKENDS:
    raise ConfigError(f"STREAMING_AUM_SCAN={_backend!r}; accepted values: {SCAN_BACKENDS}")


def set_scan_backend(name: str) -> None:
    global _backend
    if name not in SCAN_BACKENDS:
        raise ConfigError(f"unknown scan backend {name!r}; choose one of {SCAN_BACKENDS}")
    _backend = name


def get_scan_backend() -> str:
    return _backend


@contextlib.contextmanager
def scan_backend(name: str) -> Iterator[None]:
    """Temporarily select a backend: ``with scan_backend("reference"): model(x)``."""
    previous = _backend
    set_scan_backend(name)
    try:
        yield
    finally:
        set_scan_backend(previous)


def _needs_grad(*tensors: torch.Tensor | None) -> bool:
    return torch.is_grad_enabled() and any(t is not None and t.requires_grad for t in tensors)


def resolve_backend(u: torch.Tensor, *params: torch.Tensor | None) -> str:
    """The backend that will run a scan on these tensors under the current setting."""
    grad = _needs_grad(u, *params)
    fused_ok = (scan_fused_cpu.HAVE_NUMBA and u.device.type == "cpu"
                and u.dtype == torch.float32)
    cuda_ok = scan_cuda.HAVE_MAMBA_SSM and u.is_cuda and u.dtype != torch.float64
    if _backend in ("reference", "export"):
        return _backend
    if _backend == "auto":
        return "cuda" if cuda_ok else "fused" if fused_ok else "reference"
    if _backend == "fused" and not fused_ok:
        raise ConfigError("scan backend 'fused' needs float32 CPU tensors and numba; got dtype "
                          f"{u.dtype}, device {u.device} (gradients {grad}). Use 'auto' or "
                          "'reference'.")
    if _backend == "cuda" and not cuda_ok:
        raise ConfigError("scan backend 'cuda' needs mamba-ssm (extra 'cuda') and CUDA tensors "
                          f"of a dtype other than float64; got {u.dtype} on {u.device}.")
    return _backend


def fused_inference_path(x: torch.Tensor) -> bool:
    """Whether a mixer may call the fused CPU kernels directly (``BiMambaMixer._forward_fused``)
    for activations ``x``: no gradient recording, and ``resolve_backend`` picks ``fused`` for
    them (so a backend setting that cannot serve ``x`` raises its error here). The one switch
    of the CPU inference path: the patch embedding's matmul form follows it too."""
    return not torch.is_grad_enabled() and resolve_backend(x) == "fused"


def initial_state_by_linearity(delta: torch.Tensor, delta_bias: torch.Tensor | None,
                               A: torch.Tensor, C: torch.Tensor, h0: torch.Tensor,
                               reverse: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """What an initial state ``h0`` adds to a zero-state scan: ``(dy (batch, L, E), dh (batch, E, S))``.

    The recurrence is linear in ``h``: with ``P_t = prod_{tau<=t} exp(dt_tau A)`` (a cumulative
    sum of non-positive exponents, so it cannot overflow), ``h_t = h_t^0 + P_t h0``.
    Memory (batch, L, E, S): for the CUDA path and short streaming windows.
    """
    d = delta if delta_bias is None else delta + delta_bias
    dt = softplus_like_cuda(d.float())
    expo = dt.unsqueeze(-1) * A.float()  # (batch, L, E, S)
    if reverse:
        expo = expo.flip(1)
    decay = torch.exp(torch.cumsum(expo, dim=1))
    if reverse:
        decay = decay.flip(1)
    h0f = h0.float()
    dy = torch.einsum("bles,bes,bls->ble", decay, h0f, C.float())
    dh = (decay[:, 0] if reverse else decay[:, -1]) * h0f
    return dy, dh


def selective_scan(
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
    A_b: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Selective scan; layouts and semantics of ``scan_reference.selective_scan_reference``.

    u, delta: (batch, L, E); A: (E, S); B, C: (batch, L, S); D, delta_bias: (E,);
    h0: (batch, E, S) or None (zeros). Returns ``(y (batch, L, E), h_last (batch, E, S))``;
    with ``reverse`` the scan runs from L-1 to 0 and ``h_last`` is the state after position 0.
    ``state_at`` (forward scans): return the state after the first ``state_at`` steps instead
    (the streaming frontier); the outputs are those of one scan over all L steps.
    ``A_b`` (forward scans; ``v1`` Fo-Bi): add a reverse scan of the same inputs with ``A_b``
    from zeros after the end, D skip included again (official ``bimamba_inner_fn``); the
    returned state stays the forward one. The fused CPU kernel does it all in one call.
    """
    backend = resolve_backend(u, delta, A, B, C, D, delta_bias, h0, A_b)
    length = u.shape[1]
    if reverse and (state_at is not None or A_b is not None):
        raise ValueError("state_at and A_b are only defined for forward scans")
    if backend == "fused" and not _needs_grad(u, delta, A, B, C, D, delta_bias, h0, A_b):
        return scan_fused_cpu.selective_scan_fused_cpu(u, delta, A, B, C, D, delta_bias,
                                                       h0=h0, reverse=reverse,
                                                       state_at=state_at, A_b=A_b)
    if A_b is not None:
        y, h = selective_scan(u, delta, A, B, C, D, delta_bias, h0=h0, state_at=state_at)
        y_b, _ = selective_scan(u, delta, A_b, B, C, D, delta_bias, reverse=True)
        return y + y_b, h
    if backend == "export":
        from .scan_export import selective_scan_export

        return selective_scan_export(u, delta, A, B, C, D, delta_bias, h0=h0, reverse=reverse,
                                     state_at=state_at)
    if state_at is not None and state_at != length:  # two segments; the state between them
        head = [t[:, :state_at] for t in (u, delta, B, C)]
        tail = [t[:, state_at:] for t in (u, delta, B, C)]
        y1, h_mid = selective_scan(head[0], head[1], A, head[2], head[3], D, delta_bias, h0=h0)
        y2, _ = selective_scan(tail[0], tail[1], A, tail[2], tail[3], D, delta_bias, h0=h_mid)
        return torch.cat([y1, y2], dim=1), h_mid
    if backend == "fused":  # with gradients (inference returned above)
        return scan_fused_grad.selective_scan_fused_grad(u, delta, A, B, C, D, delta_bias,
                                                         h0=h0, reverse=reverse)
    if backend == "cuda":
        y, h_last = scan_cuda.selective_scan_cuda(u, delta, A, B, C, D, delta_bias, reverse=reverse)
        if h0 is not None:
            dy, dh = initial_state_by_linearity(delta, delta_bias, A, C, h0, reverse)
            y, h_last = y + dy.to(y.dtype), h_last + dh
        return y, h_last
    return selective_scan_reference(u, delta, A, B, C, D, delta_bias, h0=h0, reverse=reverse)


def causal_conv1d(
    x: torch.Tensor,
    weight: torch.Tensor,
    bias: torch.Tensor | None = None,
    *,
    conv_state: torch.Tensor | None = None,
    reverse: bool = False,
    state_at: int | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Depthwise conv + SiLU over time, channels-last ``(batch, L, E)``.

    ``reverse=False``: causal, continuing from ``conv_state`` (batch, K-1, E), returns the new
    state (after ``state_at`` inputs, default all). ``reverse=True``: anti-causal (the v2
    backward branch: causal on the flipped sequence), with zeros after the end; the returned
    state is that of the flipped sequence.
    One path for every device and dtype: ``causal_conv1d_reference`` (K shifted
    multiply-adds, channels-last, already vectorised by PyTorch). The mixer's float32 CPU
    inference path (``fused_inference_path``) calls the numba kernel of ``conv_fused_cpu``
    instead, tested against this function.
    """
    if reverse:
        if conv_state is None:  # the v2 backward branch: no flipped copies
            return anticausal_conv1d_reference(x, weight, bias)
        out, state = causal_conv1d_reference(x.flip(1), weight, bias, conv_state=conv_state)
        return out.flip(1), state
    return causal_conv1d_reference(x, weight, bias, conv_state=conv_state, state_at=state_at)
