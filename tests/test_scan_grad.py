"""The differentiable fused CPU scan (numba forward + backward kernels) against autograd through
the float64 reference scan: outputs, final state and every input gradient."""

import pytest
import torch

from streaming_aum.ops import dispatch
from streaming_aum.ops.scan_fused_cpu import HAVE_NUMBA
from streaming_aum.ops.scan_fused_grad import selective_scan_fused_grad
from streaming_aum.ops.scan_reference import selective_scan_reference

pytestmark = pytest.mark.skipif(not HAVE_NUMBA, reason="numba not importable")

NAMES = ["y", "h_last", "u", "delta", "A", "B", "C", "D", "delta_bias", "h0"]


def _run(fn, tensors, h0, reverse, gy, gh, dtype):
    ins = [t.detach().to(dtype).requires_grad_() for t in tensors]
    h = None if h0 is None else h0.detach().to(dtype).requires_grad_()
    y, h_last = fn(*ins, h0=h, reverse=reverse)
    ((y * gy.to(dtype)).sum() + (h_last * gh.to(dtype)).sum()).backward()
    return [y, h_last] + [t.grad for t in ins] + ([h.grad] if h is not None else [])


@pytest.mark.parametrize("nb,L,E,S,reverse,with_h0", [
    (3, 7, 20, 4, False, True),     # E not a multiple of the 16 lanes, initial state
    (2, 9, 33, 16, True, True),     # reverse scan (the backward branch), 3 channel blocks
    (2, 5, 16, 16, False, False),   # zero initial state
    (1, 1, 5, 3, True, False),      # one step
])
def test_fused_grad_matches_float64_reference(nb, L, E, S, reverse, with_h0):
    g = torch.Generator().manual_seed(nb * 100 + L)
    u, delta = torch.randn(nb, L, E, generator=g), torch.randn(nb, L, E, generator=g)
    A = -(torch.rand(E, S, generator=g) * 3 + 0.05)
    B, C = torch.randn(nb, L, S, generator=g), torch.randn(nb, L, S, generator=g)
    D, bias = torch.randn(E, generator=g), 0.3 * torch.randn(E, generator=g)
    h0 = torch.randn(nb, E, S, generator=g) if with_h0 else None
    gy, gh = torch.randn(nb, L, E, generator=g), torch.randn(nb, E, S, generator=g)
    tensors = (u, delta, A, B, C, D, bias)
    got = _run(selective_scan_fused_grad, tensors, h0, reverse, gy, gh, torch.float32)
    ref = _run(selective_scan_reference, tensors, h0, reverse, gy, gh, torch.float64)
    assert len(got) == len(ref)
    for name, x, r in zip(NAMES, got, ref):
        assert x.dtype == torch.float32, name
        err = (x.double() - r).abs().max().item() / max(r.abs().max().item(), 1e-12)
        assert err < 2e-5, f"{name}: relative error {err:.2e}"


def test_auto_backend_trains_with_the_fused_kernel():
    """With gradients on float32 CPU tensors, ``auto`` now picks the fused path."""
    u = torch.randn(2, 4, 8, requires_grad=True)
    assert dispatch.resolve_backend(u) == "fused"
    with dispatch.scan_backend("reference"):
        assert dispatch.resolve_backend(u) == "reference"
    u64 = u.detach().double().requires_grad_()
    assert dispatch.resolve_backend(u64) == "reference"
