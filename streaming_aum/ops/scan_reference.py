"""Plain PyTorch selective scan and causal depthwise conv: simple, any dtype, any device.

These are the references every faster path is tested against. They run a loop over time with
torch ops, so they are slow for long sequences, but they are differentiable, run in float64 and
on any device, and take and return state like every other path.

Layouts (chosen for the CPU kernels, see ``scan_fused_cpu``):

* ``u``, ``delta``: (batch, L, E), time x channels (channels-last, as linear layers emit them);
* ``A``: (E, S), negative real diagonal state matrix (``-exp(A_log)``);
* ``B``, ``C``: (batch, L, S), input-dependent, shared by all channels;
* ``D``, ``delta_bias``: (E,);
* states ``h``: (batch, E, S).

Recurrence (Mamba-1, ``delta_softplus=True`` always, as in AuM):
``dt = softplus(delta + delta_bias)``; ``h_t = exp(dt_t * A) * h_{t-1} + dt_t * u_t * B_t``;
``y_t = <h_t, C_t> + D * u_t``. With ``reverse=True`` time runs from L-1 down to 0 and the
returned state is the one after position 0.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def softplus_like_cuda(x: torch.Tensor) -> torch.Tensor:
    """softplus with the CUDA kernel's threshold: ``x`` above 20, ``log1p(exp(x))`` below
    (``F.softplus``'s own threshold rule; 3x cheaper than composing log1p/exp/where)."""
    return F.softplus(x, beta=1.0, threshold=20.0)


def selective_scan_reference(
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
) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-step selective scan; returns ``(y (batch, L, E), h_last (batch, E, S))``.

    Computed in the promoted dtype of the inputs but at least float32 (fp16/bf16 inputs are
    upcast, as the CUDA kernel does); ``y`` is returned in ``u``'s dtype.
    """
    dtype = torch.promote_types(u.dtype, torch.float32)
    batch, length, channels = u.shape
    state = A.shape[1]
    uf, df = u.to(dtype), delta.to(dtype)
    if delta_bias is not None:
        df = df + delta_bias.to(dtype)
    dt = softplus_like_cuda(df)  # (batch, L, E)
    Af = A.to(dtype)
    Bf, Cf = B.to(dtype), C.to(dtype)
    h = (torch.zeros(batch, channels, state, dtype=dtype, device=u.device) if h0 is None
         else h0.to(dtype))
    ys = [None] * length
    steps = range(length - 1, -1, -1) if reverse else range(length)
    for t in steps:
        dt_t = dt[:, t, :, None]  # (batch, E, 1)
        h = torch.exp(dt_t * Af) * h + (dt_t * uf[:, t, :, None]) * Bf[:, t, None, :]
        ys[t] = (h * Cf[:, t, None, :]).sum(-1)
    y = torch.stack(ys, dim=1) if length else uf.new_zeros(batch, 0, channels)
    if D is not None:
        y = y + D.to(dtype) * uf
    return y.to(u.dtype), h


def _shifted_taps(xe: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None,
                  length: int, starts: list[int], activation: str | None) -> torch.Tensor:
    """``act(bias + sum_k weight[:, k] * xe[:, starts[k]:starts[k] + length])``, tap 0 first.

    K shifted multiply-adds on the channels-last layout (xe: (batch, >= L, E)); the causal
    conv's order (oldest input first) is the order, and so the float32 rounding, of F.conv1d
    here, and 2.5x faster than F.conv1d, which needs channels-first copies in and out (150 vs
    59 us for a 56-token streaming window). Contiguous (K, E) taps: a strided tap row (stride
    K) as the broadcast operand keeps addcmul_ off its vectorised path (a 56 x 384 window:
    247 us per conv vs 88 us)."""
    if activation not in ("silu", None):
        raise ValueError(f"activation must be 'silu' or None, got {activation!r}")
    w = weight.to(xe.dtype).t().contiguous()  # (K, E)
    first = xe[:, starts[0]:starts[0] + length]
    out = first * w[0] if bias is None else torch.addcmul(bias.to(xe.dtype), first, w[0])
    for k in range(1, len(starts)):
        out = out.addcmul_(xe[:, starts[k]:starts[k] + length], w[k])
    if activation == "silu":
        out = F.silu(out, inplace=not torch.is_grad_enabled() or not out.requires_grad)
    return out


def causal_conv1d_reference(
    x: torch.Tensor,
    weight: torch.Tensor,
    bias: torch.Tensor | None = None,
    *,
    conv_state: torch.Tensor | None = None,
    activation: str | None = "silu",
    state_at: int | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Depthwise causal conv over time with carried left context.

    x: (batch, L, E); weight: (E, K) or (E, 1, K) with ``weight[:, k]`` multiplying
    ``x[t - (K-1) + k]`` (PyTorch cross-correlation, as causal-conv1d); conv_state:
    (batch, K-1, E), the K-1 inputs before ``x`` (zeros at a stream start).
    Returns ``(out (batch, L, E), new_state (batch, K-1, E))``: the last K-1 inputs seen after
    the first ``state_at`` inputs of ``x`` (default: all of them).
    """
    if weight.dim() == 3:
        weight = weight[:, 0, :]
    channels, width = weight.shape
    batch, length = x.shape[0], x.shape[1]
    if conv_state is None:
        conv_state = x.new_zeros(batch, width - 1, channels)
    xe = torch.cat([conv_state.to(x.dtype), x], dim=1)  # (batch, K-1+L, E)
    out = _shifted_taps(xe, weight, bias, length, list(range(width)), activation)
    at = length if state_at is None else state_at
    # clone: a view would keep the whole padded input alive (24 x (L+3) x E in a forward)
    return out, xe[:, at:at + width - 1].clone()


def anticausal_conv1d_reference(
    x: torch.Tensor,
    weight: torch.Tensor,
    bias: torch.Tensor | None = None,
    *,
    activation: str | None = "silu",
) -> tuple[torch.Tensor, torch.Tensor]:
    """``causal_conv1d_reference`` on the time-reversed sequence, from zeros (after the end of
    ``x``), returned in the original order, without flipping copies (the v2 backward branch).

    ``out[t] = bias + sum_k weight[:, k] * x[t + K-1 - k]`` (zeros beyond the end), taps in
    the same order as the flipped causal conv: equal to ``flip(causal(flip(x)))`` up to one
    rounding per element (torch's vectorised loops fuse a multiply-add where its tail loops
    do not, and the two layouts put different elements in the tails). Returns
    ``(out (batch, L, E), state (batch, K-1, E))``: the state is that of the flipped sequence
    (its last K-1 inputs: ``x[K-2], ..., x[0]``)."""
    if weight.dim() == 3:
        weight = weight[:, 0, :]
    channels, width = weight.shape
    batch, length = x.shape[0], x.shape[1]
    lag = width - 1
    xe = torch.cat([x, x.new_zeros(batch, lag, channels)], dim=1)  # (batch, L+K-1, E)
    out = _shifted_taps(xe, weight, bias, length, [lag - k for k in range(width)], activation)
    # the flipped sequence's last K-1 inputs: zeros, then x[min(L, K-1) - 1], ..., x[0]
    head = xe[:, :min(length, lag)].flip(1)
    state = torch.cat([x.new_zeros(batch, lag - head.shape[1], channels), head], dim=1)
    return out, state
