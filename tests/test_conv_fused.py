"""The fused CPU conv + SiLU kernel (``ops.conv_fused_cpu``) against an explicit float64 loop
and against the PyTorch path it replaces (``dispatch.causal_conv1d``)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from streaming_aum.ops.conv_fused_cpu import conv1d_silu_fused, conv_weight_taps
from streaming_aum.ops.dispatch import causal_conv1d


def loop_conv_silu(x: np.ndarray, w: np.ndarray, b: np.ndarray, state: np.ndarray | None,
                   reverse: bool) -> np.ndarray:
    """float64, one output at a time: out[t, e] = silu(b[e] + sum_k w[e, k] x[t - (K-1) + k, e])
    (causal, ``state`` the K-1 inputs before x) or, reversed, x[t + (K-1) - k] with zeros after
    the end."""
    nb, L, E = x.shape
    K = w.shape[1]
    out = np.zeros((nb, L, E))
    for bi in range(nb):
        for t in range(L):
            for e in range(E):
                acc = float(b[e])
                for k in range(K):
                    if reverse:
                        src = t + K - 1 - k
                        v = x[bi, src, e] if src < L else 0.0
                    else:
                        src = t - (K - 1) + k
                        v = x[bi, src, e] if src >= 0 else (
                            state[bi, K - 1 + src, e] if state is not None else 0.0)
                    acc += float(w[e, k]) * float(v)
                out[bi, t, e] = acc / (1.0 + math.exp(-acc)) if acc > -700 else 0.0
    return out


@pytest.mark.parametrize("L,E,K", [(1, 5, 4), (3, 17, 4), (13, 40, 4), (56, 192, 4), (9, 33, 2),
                                   (7, 16, 5)])
def test_fused_conv_matches_float64_loop_and_torch_path(L, E, K):
    g = torch.Generator().manual_seed(L * 100 + E)
    nb = 2
    xz = 2 * torch.randn(nb, L, 2 * E + 3, generator=g)  # the conv reads channels 0..E-1 only
    w = 0.7 * torch.randn(E, 1, K, generator=g)
    b = torch.randn(E, generator=g)
    state = torch.randn(nb, K - 1, E, generator=g)
    taps, bias = conv_weight_taps(w), b.numpy()
    x = xz[..., :E]
    for st in (state, None):
        ref = loop_conv_silu(x.double().numpy(), w[:, 0].double().numpy(), bias.astype(np.float64),
                             None if st is None else st.double().numpy(), reverse=False)
        for at in sorted({0, 1, L // 2, L}):
            out, new_state = conv1d_silu_fused(xz, taps, bias, conv_state=st, state_at=at)
            np.testing.assert_allclose(out.double().numpy(), ref, rtol=2e-6, atol=2e-6)
            t_out, t_state = causal_conv1d(x, w, b, conv_state=st, state_at=at)
            torch.testing.assert_close(out, t_out, rtol=2e-6, atol=2e-6)
            assert torch.equal(new_state, t_state)  # a copy of inputs: exact
    ref = loop_conv_silu(x.double().numpy(), w[:, 0].double().numpy(), bias.astype(np.float64),
                         None, reverse=True)
    out, none = conv1d_silu_fused(xz, taps, bias, reverse=True)
    assert none is None
    np.testing.assert_allclose(out.double().numpy(), ref, rtol=2e-6, atol=2e-6)
    torch.testing.assert_close(out, causal_conv1d(x, w, b, reverse=True)[0], rtol=2e-6, atol=2e-6)


def test_fused_conv_extreme_values_are_finite_and_exact_in_the_limits():
    """SiLU from exp(-|a|): no overflow for |a| up to float32's range; silu(a) -> a for large a,
    -> -0 for very negative a."""
    E = 20
    xz = torch.tensor([1e30, -1e30, 80.0, -80.0, 0.0]).repeat(4).reshape(1, 1, E)
    taps = np.zeros((4, E), np.float32)
    taps[3] = 1.0  # the newest input only
    out, _ = conv1d_silu_fused(xz.contiguous(), taps, np.zeros(E, np.float32))
    assert torch.isfinite(out).all()
    v = out[0, 0, :5]
    assert v[0] == 1e30 and v[2] == 80.0 and v[4] == 0.0
    assert v[1] == 0.0 and -1e-30 < v[3].item() < 0.0


def test_fused_conv_output_does_not_depend_on_position():
    """Identical inputs give identical outputs whatever the token's place in the sequence and
    the sequence's length (no tail loop with other rounding): the property that keeps a
    streaming window's conv equal to the offline sequence's."""
    E = 37
    g = torch.Generator().manual_seed(3)
    x = torch.randn(1, 30, E, generator=g)
    taps = (0.5 * torch.randn(4, E, generator=g)).numpy()
    bias = torch.randn(E, generator=g).numpy()
    whole, _ = conv1d_silu_fused(x, taps, bias)
    tail, _ = conv1d_silu_fused(x[:, 10:].contiguous(), taps, bias,
                                conv_state=x[:, 7:10].contiguous())
    assert torch.equal(whole[:, 10:], tail)
    back_whole, _ = conv1d_silu_fused(x, taps, bias, reverse=True)
    back_head, _ = conv1d_silu_fused(x[:, :20].contiguous(), taps, bias, reverse=True)
    assert torch.equal(back_whole[:, :17], back_head[:, :17])  # 3 taps reach past 20


def test_fused_conv_rejects_what_it_cannot_run():
    taps = np.zeros((4, 8), np.float32)
    bias = np.zeros(8, np.float32)
    with pytest.raises(ValueError, match="contiguous float32"):
        conv1d_silu_fused(torch.zeros(1, 5, 16, dtype=torch.float64), taps, bias)
    with pytest.raises(ValueError, match="contiguous float32"):
        conv1d_silu_fused(torch.zeros(1, 16, 5).transpose(1, 2), taps, bias)
    with pytest.raises(ValueError, match="at least 8"):
        conv1d_silu_fused(torch.zeros(1, 5, 6), taps, bias)
    with pytest.raises(ValueError, match="state_at"):
        conv1d_silu_fused(torch.zeros(1, 5, 8), taps, bias, state_at=6)
    with pytest.raises(ValueError, match=r"conv_state has shape \(1, 2, 8\)"):
        conv1d_silu_fused(torch.zeros(1, 5, 8), taps, bias, conv_state=torch.zeros(1, 2, 8))
