"""Fused CPU depthwise conv + SiLU (numba): the mixer's short conv in one pass, for inference.

A streaming hop runs each layer's conv on a few dozen tokens (a 56 x 192 window for the
default model), where the PyTorch form (``scan_reference._shifted_taps``: a concatenation
with the carried state, one multiply-add per tap, a SiLU, a state copy: 6-8 ops) costs
dispatch, not arithmetic. This kernel reads the input where it lies, in the in-projection's
output ``xz`` (B, L, >= E) (the conv input is its first ``E`` channels: no slice copy), takes
the carried state without concatenating, and writes the conv output, its SiLU and the new
state in one call.

Numerics: ``acc = bias + sum_k w[k] * x[t - (K-1) + k]``, oldest tap first (the order of
``causal_conv1d_reference`` and of ``F.conv1d``), each step one explicit fused multiply-add
(``scan_fused_cpu.fma_f32``); ``silu`` is ``pointwise_cpu.silu_f32`` (``sigmoid`` from
``exp(-|a|)`` with the scan kernel's vectorised float32 exp, so no exp can overflow). Per
element within a few ulp of the PyTorch path (which rounds each multiply-add separately in
its tail loops and uses Sleef's exp): equal to 1e-6 relative, tested against it and against a
float64 loop. Every element is computed the same way whatever its position and wherever the
arrays lie in memory (explicit FMAs, no optional fusion: ``pointwise_cpu.POINTWISE_FASTMATH``;
both tested), so a streaming window and the offline sequence get identical values for
identical inputs.

Channels are the vector lanes (channels-last); ``error_model="numpy"`` lets the SiLU's division
vectorise (numba's default checks each division for zero, which keeps it scalar).
Float32, CPU, no autograd: ``BiMambaMixer._forward_fused`` uses it; training and other
dtypes keep the PyTorch path.
"""

from __future__ import annotations

import numpy as np
import torch

from .scan_fused_cpu import HAVE_NUMBA

if HAVE_NUMBA:
    from numba import njit

    from .pointwise_cpu import POINTWISE_FASTMATH, silu_f32
    from .scan_fused_cpu import fma_f32, prefer_512_bit_vectors

    @njit(fastmath=POINTWISE_FASTMATH, nogil=True, inline="always", error_model="numpy")
    def _conv_row(x, b, state, wt, bias, out, ob, reverse, first):  # pragma: no cover - compiled
        """out[ob, first:] = silu(conv of x[b, :, :E]) at rows ``first..L-1``: causal from
        state[b] or anti-causal."""
        L = x.shape[1]
        K, E = wt.shape
        lag = K - 1
        for t in range(first, L):
            for e in range(E):
                out[ob, t, e] = bias[e]
            for k in range(K):
                if reverse:
                    src = t + lag - k
                    if src < L:
                        for e in range(E):
                            out[ob, t, e] = fma_f32(wt[k, e], x[b, src, e], out[ob, t, e])
                else:
                    src = t - lag + k
                    if src >= 0:
                        for e in range(E):
                            out[ob, t, e] = fma_f32(wt[k, e], x[b, src, e], out[ob, t, e])
                    else:
                        for e in range(E):
                            out[ob, t, e] = fma_f32(wt[k, e], state[b, lag + src, e],
                                                out[ob, t, e])
            for e in range(E):
                out[ob, t, e] = silu_f32(out[ob, t, e])

    @njit(fastmath=POINTWISE_FASTMATH, cache=True, nogil=True, error_model="numpy")
    def _conv_silu_kernel(x, state, wt, bias, wt_b, bias_b, out, new_state, state_at,
                          mode):  # pragma: no cover - compiled
        """x: (nb, L, >= E) f32 C-contiguous, the conv input in channels ``0..E-1``; wt,
        wt_b: (K, E) taps (``wt[k] = weight[:, k]``); bias, bias_b: (E,).

        ``mode`` 0: causal from ``state`` (nb, K-1, E), the K-1 inputs before ``x``, into
        ``out`` (nb, L, E); ``new_state`` (nb, K-1, E) gets the last K-1 inputs after the first
        ``state_at`` inputs. 1: anti-causal from zeros after the end,
        ``out[t] = act(bias + sum_k wt[k] * x[t + K-1 - k])`` (taps in the flipped causal
        conv's order); ``state``/``new_state`` unused. 2 (v2, both branches): mode 0 with
        ``wt``/``bias`` into ``out[:nb]``, then mode 1 with ``wt_b``/``bias_b`` into
        ``out[nb:]`` (``out`` (2 nb, L, E))."""
        prefer_512_bit_vectors()
        nb = x.shape[0]
        lag = wt.shape[0] - 1
        E = wt.shape[1]
        for b in range(nb):
            if mode == 1:
                _conv_row(x, b, state, wt, bias, out, b, True, 0)
                continue
            _conv_row(x, b, state, wt, bias, out, b, False, 0)
            if mode == 2:
                _conv_row(x, b, state, wt_b, bias_b, out, nb + b, True, 0)
            for i in range(lag):  # input index state_at - lag + i of the extended sequence
                src = state_at - lag + i
                for e in range(E):
                    new_state[b, i, e] = (x[b, src, e] if src >= 0
                                          else state[b, lag + src, e])


def conv_weight_taps(weight: torch.Tensor) -> np.ndarray:
    """A depthwise conv weight (E, 1, K) or (E, K) as the kernel's contiguous float32 taps
    (K, E)."""
    if weight.dim() == 3:
        weight = weight[:, 0, :]
    return weight.detach().float().t().contiguous().numpy()


def conv1d_silu_fused(xz: torch.Tensor, taps: np.ndarray, bias: np.ndarray, *,
                      conv_state: torch.Tensor | None = None, reverse: bool = False,
                      state_at: int | None = None, taps_b: np.ndarray | None = None,
                      bias_b: np.ndarray | None = None
                      ) -> tuple[torch.Tensor, torch.Tensor | None]:
    """SiLU of the depthwise conv of ``xz[..., :E]`` (E = ``taps.shape[1]``), one kernel call.

    xz: contiguous float32 (B, L, >= E) (the in-projection's output; only its first E
    channels are read); taps (K, E) and bias (E,): float32 numpy (``conv_weight_taps``).
    ``reverse=False``: causal from ``conv_state`` (B, K-1, E) (None: zeros), returns
    ``(out (B, L, E), new_state (B, K-1, E))``, the state after the first ``state_at`` inputs
    (default all), as ``dispatch.causal_conv1d``. With ``taps_b``/``bias_b`` (a v2 layer's
    backward conv) ``out`` is (2B, L, E): the causal conv, then the anti-causal conv with
    those taps, stacked on the batch axis. ``reverse=True``: anti-causal from zeros after the
    end (the v2 backward branch), returns ``(out, None)``.
    """
    if not HAVE_NUMBA:  # pragma: no cover
        raise RuntimeError("the fused CPU conv needs numba; use dispatch.causal_conv1d")
    if xz.dtype != torch.float32 or xz.device.type != "cpu" or not xz.is_contiguous():
        raise ValueError(f"xz must be a contiguous float32 CPU tensor, got {xz.dtype} on "
                         f"{xz.device} (contiguous={xz.is_contiguous()})")
    batch, length = xz.shape[0], xz.shape[1]
    K, E = taps.shape
    if xz.shape[2] < E:
        raise ValueError(f"xz has {xz.shape[2]} channels; the conv needs at least {E}")
    at = length if state_at is None else int(state_at)
    if not 0 <= at <= length:
        raise ValueError(f"state_at must be in [0, {length}], got {state_at}")
    pair = taps_b is not None
    if pair and (reverse or bias_b is None or taps_b.shape != taps.shape):
        raise ValueError("taps_b/bias_b (the v2 pair) need reverse=False, bias_b and taps of "
                         f"shape {taps.shape}")
    out = torch.empty(2 * batch if pair else batch, length, E, dtype=torch.float32)
    if reverse:
        dummy = np.zeros((batch, K - 1, E), np.float32)
        _conv_silu_kernel(xz.numpy(), dummy, taps, bias, taps, bias, out.numpy(), dummy, 0, 1)
        return out, None
    if conv_state is None:
        state = np.zeros((batch, K - 1, E), np.float32)
    elif tuple(conv_state.shape) != (batch, K - 1, E):  # the kernel does not bounds-check
        raise ValueError(f"conv_state has shape {tuple(conv_state.shape)}; this conv needs "
                         f"({batch}, {K - 1}, {E})")
    else:
        state = conv_state.detach().float().contiguous().numpy()
    new_state = torch.empty(batch, K - 1, E, dtype=torch.float32)
    _conv_silu_kernel(xz.numpy(), state, taps, bias, taps_b if pair else taps,
                      bias_b if pair else bias, out.numpy(), new_state.numpy(), at,
                      2 if pair else 0)
    return out, new_state
