"""mamba-ssm's CUDA selective scan, when it is installed and the tensors are on CUDA.

The optional kernel is imported once, here. ``selective_scan_fn`` takes no initial state, so
an initial state is added by linearity in ``dispatch`` (``h0`` contributes
``C_t . (prod_{tau<=t} exp(dt_tau A)) h0`` to ``y_t`` and ``prod exp(dt A) h0`` to the last state).
"""

from __future__ import annotations

import torch

try:
    from mamba_ssm.ops.selective_scan_interface import selective_scan_fn as _selective_scan_fn

    HAVE_MAMBA_SSM = True
except Exception:  # ImportError, or a broken CUDA build (missing selective_scan_cuda)
    _selective_scan_fn = None
    HAVE_MAMBA_SSM = False


def selective_scan_cuda(
    u: torch.Tensor,
    delta: torch.Tensor,
    A: torch.Tensor,
    B: torch.Tensor,
    C: torch.Tensor,
    D: torch.Tensor | None,
    delta_bias: torch.Tensor | None,
    *,
    reverse: bool = False,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Zero-initial-state scan with mamba-ssm. Layouts as ``selective_scan_reference``.

    mamba-ssm wants (batch, E, L) for u/delta and (batch, S, L) for B/C; a reverse scan is the
    forward scan of the flipped sequence.
    """
    if _selective_scan_fn is None:  # pragma: no cover - guarded by dispatch
        raise RuntimeError("mamba-ssm is not installed (pip extra 'cuda')")
    seq = (lambda x: x.flip(1)) if reverse else (lambda x: x)
    y, last = _selective_scan_fn(
        seq(u).transpose(1, 2).contiguous(), seq(delta).transpose(1, 2).contiguous(),
        A.float().contiguous(), seq(B).transpose(1, 2).contiguous(),
        seq(C).transpose(1, 2).contiguous(), None if D is None else D.float(), z=None,
        delta_bias=None if delta_bias is None else delta_bias.float(), delta_softplus=True,
        return_last_state=True)
    return seq(y.transpose(1, 2)), last
