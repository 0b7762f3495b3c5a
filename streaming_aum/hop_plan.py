"""A streaming hop with its buffers allocated once: ``window_step`` on the CPU inference path.

A hop of the state-carrying runtime evaluates every layer over the same number of tokens
(``(W + 1) * F'`` once the window is full: 56 for the default model), so all its
intermediates have fixed shapes. ``HopPlan`` allocates them once per (tokens, split) and runs
the hop as a flat sequence of six calls per layer: the fused residual add + RMSNorm, the
in-projection (``torch.mm(..., out=)``), the conv + SiLU kernel, the x and dt projections
(``bmm``/``baddbmm`` or ``mm``/``addmm`` with ``out=``), softplus + scan + gate
(``ops.ssm_block_cpu``, the three kernels called from compiled code) and the out-projection.
The same kernels receive the same inputs as on the general path (``AudioMamba.run_layers`` ->
``BiMambaMixer._forward_fused_serial``), so the results are the same bits (tested); what goes
is the Python around them: argument checks, allocations, state objects and wrappers, which
inside a running hop cost more than the small kernels (measured on the default model: ~125 us
of Python per layer against ~450 us of kernels, in the hop).

Used by ``StreamingRuntime`` for batch-1 float32 CPU inference when every kernel runs on one
thread anyway (``mixer._runs_serially``) and no forward hook watches a norm or a mixer. A plan
checks its parameter layouts on every run (each mixer's ``_fused_params`` cache, rebuilt when a
parameter changes) and is rebuilt by the runtime when they were replaced.
"""

from __future__ import annotations

import numpy as np
import torch

from .model import AudioMamba
from .model.audio_mamba import _any_hooks
from .model.mixer import _DATA_PTR, _VERSION, _runs_serially
from .ops import scan_fused_cpu
from .ops.dispatch import fused_inference_path

if scan_fused_cpu.HAVE_NUMBA:
    from .ops.conv_fused_cpu import _conv_silu_kernel
    from .ops.pointwise_cpu import _BLOCK as _SOFTPLUS_BLOCK
    from .ops.rmsnorm_fused_cpu import _add_rmsnorm_kernel
    from .ops.ssm_block_cpu import ssm_block

_F32 = np.float32

# Counts parameter registrations anywhere in the process (a module built, a parameter assigned
# or replaced: ``nn.Module.register_parameter``). A plan's check of its parameters is then one
# integer compare plus the storage pointers and version counters of the tensors it holds
# (in-place edits, ``.data`` replacement), instead of fetching every parameter from its
# module on every hop.
_REGISTRATIONS = [0]


def _count_registration(module: torch.nn.Module, name: str, param: object) -> None:
    _REGISTRATIONS[0] += 1


torch.nn.modules.module.register_module_parameter_registration_hook(_count_registration)


def plan_applies(model: AudioMamba, x: torch.Tensor) -> bool:
    """Whether ``HopPlan`` may run this hop: layer-0 tokens ``x`` (1, L, D) float32 on the
    fused CPU inference path, every layer's kernels on one thread, no forward hooks on the
    norms or mixers (the plan does not call them as modules)."""
    if x.shape[0] != 1 or x.dtype != torch.float32 or not fused_inference_path(x):
        return False
    mixer = model.layers[0].mixer
    if not _runs_serially(1, x.shape[1], mixer.d_inner, mixer.kind == "v2"):
        return False
    return not _any_hooks(model.norm_f, *(b.norm for b in model.layers),
                          *(b.mixer for b in model.layers))


class _LayerBuffers:
    """One layer's preallocated intermediates for L tokens and, in ``bound``, everything a run
    passes to its kernels (parameters in kernel layouts, buffers and their numpy views)."""

    def __init__(self, block, length: int) -> None:
        mix = block.mixer
        prm = mix._fused_params()
        E, R, S = mix.d_inner, mix.dt_rank, mix.d_state
        D = mix.d_model
        L = length
        pair = mix.kind == "v2"
        nb = 2 if pair else 1
        self.res = np.empty((1, L, D), _F32)  # this layer's residual: the next layer's input
        normed, xz = torch.empty(L, D), torch.empty(L, 2 * E)
        xcs, delta = torch.empty(nb, L, E), torch.empty(nb, L, E)
        x_dbl = torch.empty(nb, L, R + 2 * S)
        dt = np.empty((nb, L, E), _F32)
        gated, hidden = torch.empty(L, E), torch.empty(L, D)
        # Everything a run passes per layer, bound once (numpy views share the tensors'
        # memory): the run loop unpacks one tuple instead of ~40 attribute and dict lookups
        # (inside a hop each costs several times its tight-loop time).
        xz3 = xz.numpy().reshape(1, L, 2 * E)
        self.bound = (
            self.res[0], normed.numpy(), normed, prm["w_in"].t(), xz, xz3,
            prm["taps"], prm["conv_bias"], prm["taps_b"] if pair else prm["taps"],
            prm["conv_bias_b"] if pair else prm["conv_bias"], xcs.numpy(), 2 if pair else 0,
            pair, xcs, x_dbl, x_dbl[..., :R], delta,
            prm["w_x_pair"] if pair else prm["w_x"].t(),
            prm["w_dt_pair"] if pair else prm["w_dt"].t(),
            prm["bias_pair"] if pair else prm["bias"], xcs[0], x_dbl[0],
            x_dbl[0, :, :R], delta[0], delta.view(-1).numpy(), dt, dt.reshape(-1),
            (dt.size + _SOFTPLUS_BLOCK - 1) // _SOFTPLUS_BLOCK, np.empty((1, S, E), _F32),
            prm["At"], prm["Abt"], x_dbl[..., R:R + S].numpy(), x_dbl[..., R + S:].numpy(),
            prm["D"], prm["D_b"] if pair else prm["D"], 3 if pair else 2 if mix.kind == "v1" else 0,
            np.empty((nb, L, E), _F32), np.zeros((1, S, E), _F32), np.empty((1, S, E), _F32),
            nb * ((E + scan_fused_cpu.LANES - 1) // scan_fused_cpu.LANES),
            gated.numpy().reshape(1, L, E), gated, prm["w_out"].t(), hidden,
            hidden.numpy().reshape(1, L, D),
            block.norm.weight.detach().numpy(), _F32(block.norm.eps))  # shares the weight


class HopPlan:
    """``window_step`` for ``length`` layer-0 tokens of which the first ``split`` leave the
    window (states advanced over them), with preallocated buffers. ``run`` returns the same
    values as ``runtime.window_step`` (same kernels, same inputs)."""

    def __init__(self, model: AudioMamba, length: int, split: int) -> None:
        if not 0 <= split <= length:
            raise ValueError(f"split must be in [0, {length}], got {split}")
        self.model = model
        self.length, self.split = length, split
        self.layers = [_LayerBuffers(block, length) for block in model.layers]
        D = model.config.embed_dim
        self.final_res = np.empty((1, length, D), _F32)
        self.out = torch.empty(1, length, D)
        self.out_np = self.out.numpy()
        self.norm_f_w = model.norm_f.weight.detach().numpy()
        self.norm_f_eps = _F32(model.norm_f.eps)
        self._tensors = [t for block in model.layers
                         for t in (*block.mixer.fused_source_tensors(), block.norm.weight)]
        self._tensors.append(model.norm_f.weight)
        self._key = self._parameter_key()

    def _parameter_key(self) -> tuple:
        return (_REGISTRATIONS[0], *map(_DATA_PTR, self._tensors),
                *map(_VERSION, self._tensors))

    def current(self) -> bool:
        """Whether the parameters are still the ones planned with: no parameter registered
        anywhere since (a replaced parameter or module), and the same storage and version
        counter for each tensor the plan reads (in-place edits, ``load_state_dict``)."""
        return self._parameter_key() == self._key

    def run(self, x: torch.Tensor, conv: torch.Tensor, ssm: torch.Tensor
            ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """x (1, L, D) float32 layer-0 tokens; conv (depth, 1, K-1, E), ssm (depth, 1, E, S)
        the forward states before them. Returns ``(out (1, L, D), conv', ssm')``: final
        features (a buffer of this plan, overwritten by its next run) and new state tensors,
        the states after the first ``split`` tokens."""
        if x.shape[1] != self.length:
            raise ValueError(f"this plan is for {self.length} tokens, got {x.shape[1]}")
        split = self.split
        conv_in = conv.contiguous().numpy()
        ssm_in = ssm.contiguous().numpy()
        new_conv = np.empty_like(conv_in)
        new_ssm = np.empty_like(ssm_in)
        res_in = x.contiguous().numpy()
        hidden = res_in
        add = False
        mm, bmm, baddbmm, addmm = torch.mm, torch.bmm, torch.baddbmm, torch.addmm
        for i, buf in enumerate(self.layers):
            (res2, normed_np, normed, w_in_t, xz, xz3, taps, cbias, taps_b, cbias_b, xcs_np,
             conv_mode, pair, xcs, x_dbl, x_dbl_r, delta, w_x, w_dt, dt_bias, xcs0, x_dbl0,
             x_dbl0_r, delta0, delta_flat, dt, dt_flat, sp_blocks, h0t, At, Abt,
             B_np, C_np, D_skip, D_b, mode, y, hmid, hT, scan_items, gated_np, gated,
             w_out_t, hidden_t, hidden_np, norm_w, eps) = buf.bound
            _add_rmsnorm_kernel(res_in[0], hidden[0], add, norm_w, eps, res2, normed_np)
            mm(normed, w_in_t, out=xz)
            _conv_silu_kernel(xz3, conv_in[i], taps, cbias, taps_b, cbias_b, xcs_np,
                              new_conv[i], split, conv_mode)
            if pair:
                bmm(xcs, w_x, out=x_dbl)
                baddbmm(dt_bias, x_dbl_r, w_dt, out=delta)
            else:
                mm(xcs0, w_x, out=x_dbl0)
                addmm(dt_bias, x_dbl0_r, w_dt, out=delta0)
            ssm_block(delta_flat, dt, dt_flat, sp_blocks, ssm_in[i], h0t, xcs_np, At, Abt, B_np,
                      C_np, D_skip, D_b, mode, split, y, hmid, hT, scan_items, new_ssm[i], xz3,
                      gated_np, pair)
            mm(gated, w_out_t, out=hidden_t)
            res_in, hidden, add = buf.res, hidden_np, True
        _add_rmsnorm_kernel(res_in[0], hidden[0], True, self.norm_f_w, self.norm_f_eps,
                            self.final_res[0], self.out_np[0])
        return self.out, torch.from_numpy(new_conv), torch.from_numpy(new_ssm)


__all__ = ["HopPlan", "plan_applies"]
