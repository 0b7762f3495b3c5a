"""AuM's bidirectional Mamba mixer: ``none`` (Fo-Fo), ``v1`` (Fo-Bi) and ``v2`` (Bi-Bi).

Shapes: input ``a`` (B, L, D) -> output (B, L, D); ``E = expand * D`` inner channels,
``S = d_state``, ``R = dt_rank``. Everything inside is channels-last (B, L, E).

* ``none``: causal conv + SiLU, forward scan, ``y * silu(z)``, out_proj.
* ``v1``: the *same* conv output, dt, B, C and D feed a forward scan with ``A`` and a backward
  (reversed) scan with ``A_b``; ``out_proj((y_f + y_b) * silu(z))``, no division by 2 (the D skip
  therefore appears twice), exactly as the official ``bimamba_inner_fn``.
* ``v2``: a full second branch (anti-causal ``conv1d_b``, ``x_proj_b``, ``dt_proj_b``, ``A_b``,
  ``D_b``) on the reversed sequence; ``out_proj((y_f + y_b) * silu(z) / 2)`` (``if_devide_out``).

Only the forward direction can carry state across calls (``MixerState``); the backward direction
always starts from zeros at the end of what it is given, as at the end of an offline sequence.

Inference on float32 CPU tensors with the fused scan (``dispatch.fused_inference_path``) takes
``_forward_fused``: the same arithmetic in fewer calls (the conv + SiLU as one numba kernel
reading the in-projection's output in place, the dt bias inside the dt projection, the scan
kernel called directly, softplus and the ``silu(z)`` gate as vectorised numba passes
(``pointwise_cpu``), ``-exp(A_log)``, the conv taps and the kernel layouts of the SSM
parameters cached per layer until a parameter changes). A streaming hop runs each layer on a
few dozen tokens, where every separate torch op costs more in dispatch than in arithmetic;
calls whose kernels all run on one thread anyway (``_runs_serially``) go through
``_forward_fused_serial``, the same kernels called directly on numpy buffers (identical bits).
"""

from __future__ import annotations

import math
import operator
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..ops import causal_conv1d, selective_scan
from ..ops import scan_fused_cpu
from ..ops.conv_fused_cpu import conv1d_silu_fused, conv_weight_taps
from ..ops.pointwise_cpu import gated_output, softplus_fused
from ..ops.pointwise_cpu import _BLOCK as SOFTPLUS_BLOCK
from ..ops.pointwise_cpu import _MIN_PARALLEL as SOFTPLUS_MIN_PARALLEL
from ..ops.dispatch import fused_inference_path

if scan_fused_cpu.HAVE_NUMBA:  # the fused path is only taken with numba (dispatch)
    from ..ops.conv_fused_cpu import _conv_silu_kernel
    from ..ops.ssm_block_cpu import ssm_block


def pair_projections(xcs: torch.Tensor, w_x_pair: torch.Tensor, w_dt_pair: torch.Tensor,
                     bias_pair: torch.Tensor, dt_rank: int) -> tuple[torch.Tensor, torch.Tensor]:
    """A v2 layer's x and dt projections for both branches at once (one ``bmm``, one
    ``baddbmm``). xcs (2B, L, E): forward rows, then backward rows; w_x_pair (2, E, R+2S),
    w_dt_pair (2, R, E), bias_pair (2, 1, E). Returns ``(delta (2B, L, E) with the dt bias,
    x_dbl (2B, L, R+2S))``."""
    rows, length, E = xcs.shape
    x_dbl = torch.bmm(xcs.view(2, rows // 2 * length, E), w_x_pair)
    delta = torch.baddbmm(bias_pair, x_dbl[..., :dt_rank], w_dt_pair)
    return delta.view(rows, length, E), x_dbl.view(rows, length, -1)


_DATA_PTR = torch.Tensor.data_ptr
_VERSION = operator.attrgetter("_version")
_DTYPE = operator.attrgetter("dtype")


def _runs_serially(batch: int, length: int, channels: int, pair: bool) -> bool:
    """Whether the fused path would run every kernel of this layer call on the calling thread
    (one torch thread, or work below the thread-split thresholds of ``run_scan`` and
    ``softplus_fused``): then ``BiMambaMixer._forward_fused_serial`` may call them directly."""
    rows = 2 * batch if pair else batch
    return torch.get_num_threads() == 1 or (
        length * channels < scan_fused_cpu._MIN_PARALLEL_WORK
        and rows * length * channels < SOFTPLUS_MIN_PARALLEL)


@dataclass
class MixerState:
    """Forward-direction state at a sequence position: the last ``d_conv - 1`` pre-conv inputs
    ``conv`` (B, K-1, E) and the SSM state ``ssm`` (B, E, S)."""

    conv: torch.Tensor
    ssm: torch.Tensor


class BiMambaMixer(nn.Module):
    def __init__(self, d_model: int, *, kind: str = "v1", d_state: int = 16, d_conv: int = 4,
                 expand: int = 2, dt_rank: int | None = None, dt_min: float = 1e-3,
                 dt_max: float = 0.1, dt_init_floor: float = 1e-4) -> None:
        super().__init__()
        self.kind = kind
        self.d_model = d_model
        self.d_state = d_state
        self.d_conv = d_conv
        self.d_inner = expand * d_model
        self.dt_rank = dt_rank or math.ceil(d_model / 16)
        E, S, R = self.d_inner, d_state, self.dt_rank
        # Registration order = the official state_dict order.
        a_init = torch.log(torch.arange(1, S + 1, dtype=torch.float32)).repeat(E, 1)  # S4D-real
        self.A_log = nn.Parameter(a_init.clone())
        self.D = nn.Parameter(torch.ones(E))
        if kind in ("v1", "v2"):
            self.A_b_log = nn.Parameter(a_init.clone())
        if kind == "v2":
            self.D_b = nn.Parameter(torch.ones(E))
        self.in_proj = nn.Linear(d_model, 2 * E, bias=False)
        self.conv1d = nn.Conv1d(E, E, d_conv, groups=E, bias=True, padding=d_conv - 1)
        self.x_proj = nn.Linear(E, R + 2 * S, bias=False)
        self.dt_proj = nn.Linear(R, E, bias=True)
        if kind == "v2":
            self.conv1d_b = nn.Conv1d(E, E, d_conv, groups=E, bias=True, padding=d_conv - 1)
            self.x_proj_b = nn.Linear(E, R + 2 * S, bias=False)
            self.dt_proj_b = nn.Linear(R, E, bias=True)
        self.out_proj = nn.Linear(E, d_model, bias=False)
        self._fused_cache: tuple[tuple, dict] | None = None  # see _fused_params
        self._fused_src: list[tuple[str | None, str]] | None = None
        self._init_dt(self.dt_proj, dt_min, dt_max, dt_init_floor)
        if kind == "v2":
            self._init_dt(self.dt_proj_b, dt_min, dt_max, dt_init_floor)

    def _init_dt(self, proj: nn.Linear, dt_min: float, dt_max: float, floor: float) -> None:
        """Mamba's dt init: weight U(+-R^-1/2), bias = softplus^-1(dt), dt log-uniform."""
        nn.init.uniform_(proj.weight, -self.dt_rank ** -0.5, self.dt_rank ** -0.5)
        dt = torch.exp(torch.rand(self.d_inner) * (math.log(dt_max) - math.log(dt_min))
                       + math.log(dt_min)).clamp(min=floor)
        with torch.no_grad():
            proj.bias.copy_(dt + torch.log(-torch.expm1(-dt)))

    # ------------------------------------------------------------------------------------
    def zero_state(self, batch: int, *, dtype: torch.dtype = torch.float32,
                   device: torch.device | None = None) -> MixerState:
        return MixerState(
            conv=torch.zeros(batch, self.d_conv - 1, self.d_inner, dtype=dtype, device=device),
            ssm=torch.zeros(batch, self.d_inner, self.d_state, dtype=torch.promote_types(
                dtype, torch.float32), device=device))

    def _ssm_inputs(self, xc: torch.Tensor, w_x: torch.Tensor, w_dt: torch.Tensor,
                    dt_bias: torch.Tensor | None = None
                    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Per-token (delta (B, L, E), B (B, L, S), C (B, L, S)) from conv output, with the
        x projection ``w_x`` (R + 2S, E) and the dt projection ``w_dt`` (E, R); ``delta``
        includes ``dt_bias`` when given (added inside the dt projection), else no bias."""
        R, S = self.dt_rank, self.d_state
        x_dbl = F.linear(xc, w_x)
        delta = F.linear(x_dbl[..., :R], w_dt, dt_bias)
        return delta, x_dbl[..., R:R + S], x_dbl[..., R + S:]

    def forward(self, a: torch.Tensor, state: MixerState | None = None, *,
                split: int | None = None) -> tuple[torch.Tensor, MixerState | None]:
        """a: (B, L, D) -> (out (B, L, D), forward state).

        ``state``: forward-direction state before ``a`` (None: a sequence start). ``split``:
        return the forward state after the first ``split`` tokens (default: after all of them);
        the outputs do not depend on ``split``. The backward direction (v1, v2) starts from
        zeros after the last token of ``a``.
        """
        if fused_inference_path(a):
            return self._forward_fused(a, state, split)
        xz = self.in_proj(a)
        x, z = xz[..., : self.d_inner], xz[..., self.d_inner:]
        conv_state0 = None if state is None else state.conv
        h0 = None if state is None else state.ssm
        xc, conv_mid = causal_conv1d(x, self.conv1d.weight, self.conv1d.bias,
                                     conv_state=conv_state0, state_at=split)
        delta, Bm, Cm = self._ssm_inputs(xc, self.x_proj.weight, self.dt_proj.weight)
        f = torch.promote_types(a.dtype, torch.float32)  # SSM params in >= float32, as the kernels
        A = -torch.exp(self.A_log.to(f))
        bias, D = self.dt_proj.bias.to(f), self.D.to(f)
        A_b = -torch.exp(self.A_b_log.to(f)) if self.kind != "none" else None
        # v1: forward + reverse scans of the same inputs (A vs A_b), summed, in one call
        y, h_mid = selective_scan(xc, delta, A, Bm, Cm, D, bias, h0=h0, state_at=split,
                                  A_b=A_b if self.kind == "v1" else None)
        if self.kind == "v2":
            xcb, _ = causal_conv1d(x, self.conv1d_b.weight, self.conv1d_b.bias, reverse=True)
            delta_b, Bb, Cb = self._ssm_inputs(xcb, self.x_proj_b.weight,
                                                  self.dt_proj_b.weight)
            y_b, _ = selective_scan(xcb, delta_b, A_b, Bb, Cb, self.D_b.to(f),
                                    self.dt_proj_b.bias.to(f), reverse=True)
            y = (y + y_b) * 0.5
        out = F.linear((y * F.silu(z)).to(a.dtype), self.out_proj.weight)
        return out, MixerState(conv=conv_mid, ssm=h_mid)

    # Fused CPU inference ------------------------------------------------------------------
    def _fused_sources(self) -> list[tuple[str | None, str]]:
        """(submodule or None, parameter name) of every parameter ``_forward_fused`` reads."""
        src: list[tuple[str | None, str]] = [
            (None, "A_log"), (None, "D"), ("in_proj", "weight"), ("conv1d", "weight"),
            ("conv1d", "bias"), ("x_proj", "weight"), ("dt_proj", "weight"),
            ("dt_proj", "bias"), ("out_proj", "weight")]
        if self.kind != "none":
            src.append((None, "A_b_log"))
        if self.kind == "v2":
            src += [(None, "D_b"), ("conv1d_b", "weight"), ("conv1d_b", "bias"),
                    ("x_proj_b", "weight"), ("dt_proj_b", "weight"), ("dt_proj_b", "bias")]
        return src

    def fused_source_tensors(self) -> list[torch.Tensor]:
        """The parameters ``_forward_fused`` reads (``_fused_sources``), as registered now."""
        if self._fused_src is None:
            self._fused_src = self._fused_sources()
        mods = self._modules
        return [(self if sub is None else mods[sub])._parameters[name]
                for sub, name in self._fused_src]

    def _fused_params(self) -> dict:
        """What ``_forward_fused`` reads, in the kernels' layouts: ``At``/``Abt`` (S, E) =
        ``-exp(A_log)`` transposed, ``D`` (and ``D_b``), the conv taps ``taps`` (K, E) and
        ``conv_bias`` (and ``_b``) as float32 numpy arrays; the dt bias ``bias`` as a float32
        tensor; the projection weights as they are (``w_in``, ``w_x``, ``w_dt``, ``w_out``);
        for v2 the two branches' x and dt projections and dt biases stacked, transposed for
        ``bmm`` (``w_x_pair`` (2, E, R+2S), ``w_dt_pair`` (2, R, E), ``bias_pair`` (2, 1, E)).
        Cached; rebuilt when any source parameter is replaced
        or changed in place (its version counter). The check reads the parameter dicts
        directly: ``nn.Module.__getattr__`` and ``get_parameter`` cost more than the small
        matmuls of a streaming hop."""
        params = self.fused_source_tensors()
        # C-level maps, not a generator: this runs once per layer call, also on every hop
        key = (*map(_DATA_PTR, params), *map(_VERSION, params), *map(_DTYPE, params))
        if self._fused_cache is not None and self._fused_cache[0] == key:
            return self._fused_cache[1]
        src = {(name if sub is None else f"{sub}.{name}"): p
               for (sub, name), p in zip(self._fused_src, params)}
        with torch.no_grad():
            f32 = {n: p.detach().float() for n, p in src.items()}
            out = {"At": (-torch.exp(f32["A_log"])).t().contiguous().numpy(),
                   "D": f32["D"].contiguous().numpy(),
                   "bias": f32["dt_proj.bias"].contiguous(),
                   "taps": conv_weight_taps(f32["conv1d.weight"]),
                   "conv_bias": f32["conv1d.bias"].contiguous().numpy(),
                   "w_in": src["in_proj.weight"], "w_x": src["x_proj.weight"],
                   "w_dt": src["dt_proj.weight"], "w_out": src["out_proj.weight"]}
            out["Abt"] = ((-torch.exp(f32["A_b_log"])).t().contiguous().numpy()
                          if self.kind != "none" else out["At"])
            if self.kind == "v2":
                out.update({"D_b": f32["D_b"].contiguous().numpy(),
                            "taps_b": conv_weight_taps(f32["conv1d_b.weight"]),
                            "conv_bias_b": f32["conv1d_b.bias"].contiguous().numpy()})
                # both branches' projections stacked for one bmm each (_fused_v2_branches)
                out["w_x_pair"] = torch.stack([f32["x_proj.weight"].t(),
                                               f32["x_proj_b.weight"].t()]).contiguous()
                out["w_dt_pair"] = torch.stack([f32["dt_proj.weight"].t(),
                                                f32["dt_proj_b.weight"].t()]).contiguous()
                out["bias_pair"] = torch.stack([f32["dt_proj.bias"],
                                                f32["dt_proj_b.bias"]]).unsqueeze(1).contiguous()
        self._fused_cache = (key, out)
        return out

    def _forward_fused(self, a: torch.Tensor, state: MixerState | None,
                       split: int | None) -> tuple[torch.Tensor, MixerState]:
        """``forward`` for float32 CPU inference (same contract and arithmetic up to float32
        rounding): the numba conv (``conv_fused_cpu``) and scan kernels called directly with
        this layer's cached parameters. ``v1``: both scan directions in one call. ``v2``: the
        two branches stacked on the batch axis (forward rows, then backward rows): one conv
        call, one batched matmul per projection, one softplus and one scan call for both,
        where a streaming hop's 56-token windows would otherwise pay each op's dispatch
        twice."""
        prm = self._fused_params()
        xz = F.linear(a, prm["w_in"])
        if _runs_serially(a.shape[0], a.shape[1], self.d_inner, self.kind == "v2"):
            return self._forward_fused_serial(xz, prm, state, split)
        conv_state = None if state is None else state.conv
        h0t = None if state is None else state.ssm.transpose(1, 2).contiguous()
        if self.kind == "v2":
            y, hmid, hT, conv_mid = self._fused_v2_branches(xz, prm, conv_state, h0t, split)
        else:
            xc, conv_mid = conv1d_silu_fused(xz, prm["taps"], prm["conv_bias"],
                                             conv_state=conv_state, state_at=split)
            delta, Bm, Cm = self._ssm_inputs(xc, prm["w_x"], prm["w_dt"], prm["bias"])
            y, hmid, hT = scan_fused_cpu.run_scan(
                softplus_fused(delta), xc, prm["At"], prm["Abt"], Bm, Cm, prm["D"], h0t,
                2 if self.kind == "v1" else 0, -1 if split is None else int(split))
        out = F.linear(gated_output(y, xz, pair=self.kind == "v2"), prm["w_out"])
        h = hT if split is None else hmid
        return out, MixerState(conv=conv_mid, ssm=h.transpose(1, 2))

    def _forward_fused_serial(self, xz: torch.Tensor, prm: dict, state: MixerState | None,
                              split: int | None) -> tuple[torch.Tensor, MixerState]:
        """``_forward_fused`` from the in-projection's output ``xz`` (B, L, 2E) on, for work
        that runs on one thread anyway (a streaming hop's window; ``_runs_serially``): the
        same kernels with the same inputs, so the same bits, called directly on numpy
        buffers, softplus + scan + gate as one compiled call (``ops.ssm_block_cpu``, as
        ``hop_plan.HopPlan`` calls it). The general path's wrappers (argument checks, thread
        split, tensor allocations; ~15 Python-level steps per kernel) cost more than a hop's
        kernels do."""
        B, L = xz.shape[0], xz.shape[1]
        E, K1, R, S = self.d_inner, self.d_conv - 1, self.dt_rank, self.d_state
        pair = self.kind == "v2"
        nb = 2 * B if pair else B
        at = L if split is None else int(split)
        if not 0 <= at <= L:
            raise ValueError(f"split must be in [0, {L}], got {split}")
        f32 = np.float32
        if state is None:
            conv0, ssm0 = np.zeros((B, K1, E), f32), np.zeros((B, E, S), f32)
        else:
            # the kernels do not bounds-check: a wrong state shape must not reach them
            if tuple(state.conv.shape) != (B, K1, E) or tuple(state.ssm.shape) != (B, E, S):
                raise ValueError(f"state shapes conv {tuple(state.conv.shape)}, ssm "
                                 f"{tuple(state.ssm.shape)}; this mixer needs ({B}, {K1}, {E}) "
                                 f"and ({B}, {E}, {S})")
            conv0 = state.conv.detach().float().contiguous().numpy()
            ssm0 = state.ssm.detach().float().contiguous().numpy()
        xz_np = xz.numpy()
        xcs, conv_mid = np.empty((nb, L, E), f32), np.empty((B, K1, E), f32)
        _conv_silu_kernel(xz_np, conv0, prm["taps"], prm["conv_bias"],
                          prm["taps_b"] if pair else prm["taps"],
                          prm["conv_bias_b"] if pair else prm["conv_bias"], xcs, conv_mid, at,
                          2 if pair else 0)
        xcs_t = torch.from_numpy(xcs)
        if pair:
            delta, x_dbl = pair_projections(xcs_t, prm["w_x_pair"], prm["w_dt_pair"],
                                            prm["bias_pair"], R)
        else:
            delta, Bm, Cm = self._ssm_inputs(xcs_t, prm["w_x"], prm["w_dt"], prm["bias"])
            x_dbl = None
        delta_np = delta.numpy()
        dt = np.empty_like(delta_np)
        if pair:
            Bm, Cm = x_dbl[..., R:R + S], x_dbl[..., R + S:]
        y, hmid, hT = np.empty((nb, L, E), f32), np.zeros((B, S, E), f32), np.empty((B, S, E), f32)
        ssm_next, gated = np.empty((B, E, S), f32), np.empty((B, L, E), f32)
        # softplus, scan and gate (and the state transposes) in one compiled call
        ssm_block(delta_np.reshape(-1), dt, dt.reshape(-1),
                  (dt.size + SOFTPLUS_BLOCK - 1) // SOFTPLUS_BLOCK, ssm0, np.empty((B, S, E), f32),
                  xcs, prm["At"], prm["Abt"], Bm.numpy(), Cm.numpy(), prm["D"],
                  prm["D_b"] if pair else prm["D"], 3 if pair else 2 if self.kind == "v1" else 0,
                  -1 if split is None else at, y, hmid, hT,
                  nb * ((E + scan_fused_cpu.LANES - 1) // scan_fused_cpu.LANES), ssm_next, xz_np,
                  gated, pair)
        out = F.linear(torch.from_numpy(gated), prm["w_out"])
        return out, MixerState(conv=torch.from_numpy(conv_mid), ssm=torch.from_numpy(ssm_next))

    def _fused_v2_branches(self, xz: torch.Tensor, prm: dict, conv_state: torch.Tensor | None,
                           h0t: torch.Tensor | None, split: int | None
                           ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """A v2 layer's two branches on (2B, L, .) stacks: returns ``(y (2B, L, E): the forward
        rows, then the backward rows, hmid, hT, conv state)``."""
        R, S = self.dt_rank, self.d_state
        xcs, conv_mid = conv1d_silu_fused(xz, prm["taps"], prm["conv_bias"],
                                          conv_state=conv_state, state_at=split,
                                          taps_b=prm["taps_b"], bias_b=prm["conv_bias_b"])
        delta, x_dbl = pair_projections(xcs, prm["w_x_pair"], prm["w_dt_pair"],
                                        prm["bias_pair"], R)
        y2, hmid, hT = scan_fused_cpu.run_scan(
            softplus_fused(delta), xcs, prm["At"], prm["Abt"], x_dbl[..., R:R + S],
            x_dbl[..., R + S:], prm["D"], h0t, 3, -1 if split is None else int(split),
            prm["D_b"])
        return y2, hmid, hT, conv_mid
