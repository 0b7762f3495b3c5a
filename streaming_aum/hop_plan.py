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

Two more savings, both exact:

* Layers after the first share one set of intermediates (``_LayerBuffers``): one set instead
  of one per layer keeps the hop's working set inside a core's L2 cache (the default model's
  four sets were ~2 MB; the AuM-tiny preset's 24 sets ~12 MB).
* Once the window slides, layer 0 reuses what the previous hop computed for the tokens both
  windows hold (``_Layer0Reuse``, kernels in ``ops.hop_layer0_cpu``): layer 0's inputs are
  the patch embeddings, which never change, and its forward branch is causal from the
  frontier, so only the new tokens need its in-projection, forward conv, projections and
  forward scan. STREAMING.md: "work that cannot change any result may be skipped".

Measured with ``aum bench streaming`` (BENCHMARKS.md, 2026-11-27): together with the
``ColumnEmbedding`` and the cheaper per-hop plan check, ~12% off a default-model hop.

Used by ``StreamingRuntime`` for batch-1 float32 CPU inference when every kernel runs on one
thread anyway (``mixer._runs_serially``) and no forward hook watches a norm or a mixer. A plan
checks its parameter layouts on every run (each mixer's ``_fused_params`` cache, rebuilt when a
parameter changes) and is rebuilt by the runtime when they were replaced.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import numpy as np
import torch

from .model import AudioMamba
from .model.audio_mamba import _any_hooks, _hook_dicts
from .model.mixer import _DATA_PTR, _VERSION, _runs_serially
from .ops import scan_fused_cpu
from .ops.dispatch import fused_inference_path

if scan_fused_cpu.HAVE_NUMBA:
    from .ops.conv_fused_cpu import _conv_silu_kernel
    from .ops.hop_layer0_cpu import layer0_conv, layer0_reuse, layer0_ssm
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


def _bypassed(model: AudioMamba) -> tuple[torch.nn.Module, ...]:
    """The modules a plan computes without calling them: their forward hooks would not run."""
    return (model.norm_f, *(b.norm for b in model.layers), *(b.mixer for b in model.layers))


def _serial_input(model: AudioMamba, x: torch.Tensor) -> bool:
    """Layer-0 tokens ``x`` (1, L, D) float32 on the fused CPU inference path, every layer's
    kernels on one thread."""
    if x.shape[0] != 1 or x.dtype != torch.float32 or not fused_inference_path(x):
        return False
    mixer = model.layers[0].mixer
    return _runs_serially(1, x.shape[1], mixer.d_inner, mixer.kind == "v2")


def plan_applies(model: AudioMamba, x: torch.Tensor) -> bool:
    """Whether ``HopPlan`` may run this hop: layer-0 tokens ``x`` (1, L, D) float32 on the
    fused CPU inference path, every layer's kernels on one thread, no forward hooks on the
    norms or mixers (the plan does not call them as modules)."""
    return _serial_input(model, x) and not _any_hooks(*_bypassed(model))


def _intermediates(block, length: int) -> dict:
    """A layer's intermediates for ``length`` tokens (every layer has the same shapes)."""
    mix = block.mixer
    E, R, S, D = mix.d_inner, mix.dt_rank, mix.d_state, mix.d_model
    L = length
    nb = 2 if mix.kind == "v2" else 1
    return {"res": np.empty((1, L, D), _F32), "normed": torch.empty(L, D),
            "xz": torch.empty(L, 2 * E), "xcs": torch.empty(nb, L, E),
            "delta": torch.empty(nb, L, E), "x_dbl": torch.empty(nb, L, R + 2 * S),
            "dt": np.empty((nb, L, E), _F32), "gated": torch.empty(L, E),
            "hidden": torch.empty(L, D), "y": np.empty((nb, L, E), _F32),
            "h0t": np.empty((1, S, E), _F32), "hmid": np.zeros((1, S, E), _F32),
            "hT": np.empty((1, S, E), _F32)}


class _Bound(NamedTuple):
    """Everything a run passes to one layer's kernels (``_LayerBuffers.bound``). ``run``
    unpacks it positionally (one tuple unpack per layer); ``_Layer0Reuse`` reads it by name."""

    res: Any
    normed_np: Any
    normed: Any
    w_in_t: Any
    xz: Any
    xz3: Any
    taps: Any
    cbias: Any
    taps_b: Any
    cbias_b: Any
    xcs_np: Any
    conv_mode: int
    pair: bool
    xcs: Any
    x_dbl: Any
    x_dbl_r: Any
    delta: Any
    w_x: Any
    w_dt: Any
    dt_bias: Any
    xcs0: Any
    x_dbl0: Any
    x_dbl0_r: Any
    delta0: Any
    delta_flat: Any
    dt: Any
    dt_flat: Any
    sp_blocks: int
    h0t: Any
    At: Any
    Abt: Any
    B_np: Any
    C_np: Any
    D_skip: Any
    D_b: Any
    mode: int
    y: Any
    hmid: Any
    hT: Any
    scan_items: int
    gated_np: Any
    gated: Any
    w_out_t: Any
    hidden_t: Any
    hidden_np: Any
    norm_w: Any
    eps: Any


class _LayerBuffers:
    """One layer's kernel arguments for L tokens, in ``bound``: its parameters in kernel
    layouts and the intermediates ``mem`` (``_intermediates``) with their numpy views.

    Layers that keep nothing between hops share one ``mem``: a layer's intermediates are dead
    once its out-projection ran, and the next layer reads only its residual and output, which
    its own add + RMSNorm consumes (element by element, in place) before anything else writes
    them. One set instead of one per layer keeps a hop's working set small (the default
    model's four sets were ~2 MB, a core's whole L2 cache; the 10 s recomputation between
    hops evicts them)."""

    def __init__(self, block, length: int, mem: dict) -> None:
        mix = block.mixer
        prm = mix._fused_params()
        E, R, S = mix.d_inner, mix.dt_rank, mix.d_state
        D = mix.d_model
        L = length
        pair = mix.kind == "v2"
        nb = 2 if pair else 1
        self.res = mem["res"]  # this layer's residual: the next layer's input
        normed, xz, xcs, delta = mem["normed"], mem["xz"], mem["xcs"], mem["delta"]
        x_dbl, dt, gated, hidden = mem["x_dbl"], mem["dt"], mem["gated"], mem["hidden"]
        # Everything a run passes per layer, bound once (numpy views share the tensors'
        # memory): the run loop unpacks one tuple instead of ~40 attribute and dict lookups
        # (inside a hop each costs several times its tight-loop time).
        xz3 = xz.numpy().reshape(1, L, 2 * E)
        self.bound = _Bound(
            self.res[0], normed.numpy(), normed, prm["w_in"].t(), xz, xz3,
            prm["taps"], prm["conv_bias"], prm["taps_b"] if pair else prm["taps"],
            prm["conv_bias_b"] if pair else prm["conv_bias"], xcs.numpy(), 2 if pair else 0,
            pair, xcs, x_dbl, x_dbl[..., :R], delta,
            prm["w_x_pair"] if pair else prm["w_x"].t(),
            prm["w_dt_pair"] if pair else prm["w_dt"].t(),
            prm["bias_pair"] if pair else prm["bias"], xcs[0], x_dbl[0],
            x_dbl[0, :, :R], delta[0], delta.view(-1).numpy(), dt, dt.reshape(-1),
            (dt.size + _SOFTPLUS_BLOCK - 1) // _SOFTPLUS_BLOCK, mem["h0t"],
            prm["At"], prm["Abt"], x_dbl[..., R:R + S].numpy(), x_dbl[..., R + S:].numpy(),
            prm["D"], prm["D_b"] if pair else prm["D"], 3 if pair else 2 if mix.kind == "v1" else 0,
            mem["y"], mem["hmid"], mem["hT"],
            nb * ((E + scan_fused_cpu.LANES - 1) // scan_fused_cpu.LANES),
            gated.numpy().reshape(1, L, E), gated, prm["w_out"].t(), hidden,
            hidden.numpy().reshape(1, L, D),
            block.norm.weight.detach().numpy(), _F32(block.norm.eps))  # shares the weight


class _Layer0Reuse:
    """What layer 0 of a plan keeps between runs to reuse the previous hop's work (see
    ``ops.hop_layer0_cpu``): the previous layer-0 input and the frontier it left, and every
    argument of the three numba calls and the projections of the new rows, bound once.
    ``buf`` is layer 0's ``_LayerBuffers``; ``n = split`` tokens arrive per hop."""

    def __init__(self, block, buf: _LayerBuffers, length: int, split: int) -> None:
        mix = block.mixer
        prm = mix._fused_params()
        E, R, S, D = mix.d_inner, mix.dt_rank, mix.d_state, mix.d_model
        K = prm["taps"].shape[0]
        L, n = length, split
        kind = mix.kind
        pair = kind == "v2"
        b = buf.bound
        normed, w_in_t, xz, xz3, xcs_np, xcs = b.normed, b.w_in_t, b.xz, b.xz3, b.xcs_np, b.xcs
        x_dbl, delta, w_x, w_dt, dt_bias = b.x_dbl, b.delta, b.w_x, b.w_dt, b.dt_bias
        dt, y, B_np, C_np, At, D_skip = b.dt, b.y, b.B_np, b.C_np, b.At, b.D_skip
        self.valid = False
        self.prev_x = np.empty((L, D), _F32)
        self.prev_conv = np.empty((K - 1, E), _F32)
        self.prev_ssm = np.empty((E, S), _F32)
        self.n = n
        first = L - n  # the first new row when the previous rows are reused
        self.reuse_args = (xz.numpy(), xcs_np[0], x_dbl[0].numpy(), dt[0], y[0])
        # in-projection and forward x/dt projections of the new rows (the first rows too
        # when nothing is reused), as on the uncached path: bmm/baddbmm for v2, mm/addmm else
        self.in_proj = [(normed, w_in_t, xz), (normed[first:], w_in_t, xz[first:])]
        if pair:
            self.x_fwd = [(xcs[0:1, r:], w_x[0:1], x_dbl[0:1, r:], dt_bias[0:1],
                           x_dbl[0:1, r:, :R], w_dt[0:1], delta[0:1, r:]) for r in (0, first)]
            self.x_back = (xcs[1:2], w_x[1:2], x_dbl[1:2], dt_bias[1:2], x_dbl[1:2, :, :R],
                           w_dt[1:2], delta[1:2])
        else:
            self.x_fwd = [(xcs[0, r:], w_x, x_dbl[0, r:], dt_bias, x_dbl[0, r:, :R], w_dt,
                           delta[0, r:]) for r in (0, first)]
            self.x_back = None
        self.conv_args = (xz3, b.taps, b.cbias, b.taps_b, b.cbias_b, xcs_np, split, pair,
                          self.prev_conv)
        # softplus of all inputs, or of the forward branch's new rows onwards (v2: and of
        # the whole backward branch, which follows them in memory)
        self.softplus = [(b.delta_flat[r * E:], b.dt_flat[r * E:],
                          (dt.size - r * E + _SOFTPLUS_BLOCK - 1) // _SOFTPLUS_BLOCK)
                         for r in (0, first)]
        hA = np.empty((1, S, E), _F32)
        y1 = y[0:1]
        if kind == "v2":
            back, Ab, Db = 2, b.Abt, b.D_b
            sl = slice(1, 2)
            yb, ysum = y[1:2], y
        elif kind == "v1":
            back, Ab, Db = 1, b.Abt, D_skip
            sl = slice(0, 1)
            yb, ysum = np.empty((1, L, E), _F32), np.empty((1, L, E), _F32)
        else:
            back, Ab, Db = 0, At, D_skip
            sl = slice(0, 1)
            yb, ysum = y1, y1
        self.ssm_tail = (
            b.h0t, At, D_skip, dt[0:1], xcs_np[0:1], B_np[0:1], C_np[0:1], y1, split,
            dt[0:1, :n], xcs_np[0:1, :n], B_np[0:1, :n], C_np[0:1, :n],
            np.empty((1, n, E), _F32), hA,
            dt[0:1, first:], xcs_np[0:1, first:], B_np[0:1, first:], C_np[0:1, first:],
            y[0:1, first:], b.hT, back, Ab, Db, dt[sl], xcs_np[sl], B_np[sl], C_np[sl], yb,
            np.zeros((1, S, E), _F32), np.empty((1, S, E), _F32), ysum, xz3, b.gated_np)
        self.items = b.scan_items // 2 if pair else b.scan_items  # one branch's blocks

    def run(self, x_np, conv_in, ssm_in, new_conv, new_ssm) -> None:
        """Layer 0's conv, projections, scans and gate for a hop (the norm ran before, the
        out-projection runs after, as for every layer). x_np (L, D) the layer-0 input;
        conv_in (1, K-1, E), ssm_in (1, E, S) the frontier; new_conv / new_ssm the same shapes,
        written."""
        reused = layer0_reuse(self.valid, x_np, self.prev_x, conv_in[0], self.prev_conv,
                              ssm_in[0], self.prev_ssm, self.n, *self.reuse_args)
        self.valid = False  # until this run completes
        normed, w_in_t, xz = self.in_proj[reused]
        mm = torch.mm
        mm(normed, w_in_t, out=xz)
        xz3, taps, cbias, taps_b, cbias_b, xcs_np, split, pair, prev_conv = self.conv_args
        first = xz3.shape[1] - self.n if reused else 0
        layer0_conv(xz3, conv_in, taps, cbias, taps_b, cbias_b, xcs_np, first, split, pair,
                    new_conv, prev_conv)
        u, w_x, x_dbl, bias, x_r, w_dt, delta = self.x_fwd[reused]
        if pair:
            torch.bmm(u, w_x, out=x_dbl)
            torch.baddbmm(bias, x_r, w_dt, out=delta)
            u, w_x, x_dbl, bias, x_r, w_dt, delta = self.x_back
            torch.bmm(u, w_x, out=x_dbl)
            torch.baddbmm(bias, x_r, w_dt, out=delta)
        else:
            mm(u, w_x, out=x_dbl)
            torch.addmm(bias, x_r, w_dt, out=delta)
        delta_flat, dt_flat, blocks = self.softplus[reused]
        layer0_ssm(delta_flat, dt_flat, blocks, reused, ssm_in[0], *self.ssm_tail, new_ssm,
                   self.prev_ssm, self.items)
        self.valid = True


class HopPlan:
    """``window_step`` for ``length`` layer-0 tokens of which the first ``split`` leave the
    window (states advanced over them), with preallocated buffers. ``run`` returns the same
    values as ``runtime.window_step`` (same kernels, same inputs)."""

    def __init__(self, model: AudioMamba, length: int, split: int) -> None:
        if not 0 <= split <= length:
            raise ValueError(f"split must be in [0, {length}], got {split}")
        self.model = model
        self.length, self.split = length, split
        # layer 0 reuses the previous hop's rows once the window slides (0 < split < length),
        # so it keeps intermediates of its own; the other layers share one set
        reuse = 0 < split < length
        blocks = list(model.layers)
        shared = _intermediates(blocks[0], length)
        self.layers = [_LayerBuffers(block, length,
                                     _intermediates(block, length) if i == 0 and reuse
                                     else shared)
                       for i, block in enumerate(blocks)]
        self.layer0 = (_Layer0Reuse(blocks[0], self.layers[0], length, split) if reuse
                       else None)
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
        self._hook_dicts = _hook_dicts(*_bypassed(model))

    def _parameter_key(self) -> tuple:
        return (_REGISTRATIONS[0], *map(_DATA_PTR, self._tensors),
                *map(_VERSION, self._tensors))

    def current(self) -> bool:
        """Whether the parameters are still the ones planned with: no parameter registered
        anywhere since (a replaced parameter or module), and the same storage and version
        counter for each tensor the plan reads (in-place edits, ``load_state_dict``)."""
        return self._parameter_key() == self._key

    def usable(self, x: torch.Tensor) -> bool:
        """``plan_applies`` and ``current`` for this plan's model, the per-hop check of a plan
        already built: the hook check reads the dicts held instead of walking the modules."""
        return (_serial_input(self.model, x) and not any(self._hook_dicts)
                and self.current())

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
        layer0 = self.layer0
        for i, buf in enumerate(self.layers):
            (res2, normed_np, normed, w_in_t, xz, xz3, taps, cbias, taps_b, cbias_b, xcs_np,
             conv_mode, pair, xcs, x_dbl, x_dbl_r, delta, w_x, w_dt, dt_bias, xcs0, x_dbl0,
             x_dbl0_r, delta0, delta_flat, dt, dt_flat, sp_blocks, h0t, At, Abt,
             B_np, C_np, D_skip, D_b, mode, y, hmid, hT, scan_items, gated_np, gated,
             w_out_t, hidden_t, hidden_np, norm_w, eps) = buf.bound
            _add_rmsnorm_kernel(res_in[0], hidden[0], add, norm_w, eps, res2, normed_np)
            if i == 0 and layer0 is not None:
                layer0.run(res_in[0], conv_in[0], ssm_in[0], new_conv[0], new_ssm[0])
                mm(gated, w_out_t, out=hidden_t)
                res_in, hidden, add = buf.res, hidden_np, True
                continue
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


class ColumnEmbedding:
    """``AudioMamba._embed_streaming_layout`` of one patch column, operands bound once.

    A streaming hop embeds one column (``P`` frames -> ``rows`` tokens). The general form is a
    dozen reshapes, permutes and checks around one small matmul; here the patches are copied
    into a preallocated buffer in the same (row, freq, time) order, then the same ``addmm`` and
    the same add of the position rows run, so the tokens are the same bits (tested). The
    weight, bias and position rows are held as views of the parameters (in-place edits are
    seen); ``usable`` rejects the object once a parameter was replaced."""

    def __init__(self, model: AudioMamba) -> None:
        pe = model.patch_embed
        P = pe.patch_size
        rows = model.config.freq_patches
        self.model, self.P, self.rows = model, P, rows
        weight, bias = pe.proj.weight, pe.proj.bias
        self.w_t = weight.reshape(weight.shape[0], P * P).t()
        self.bias = bias
        self.pos = model.pos_embed.patch_positions(rows, 1)[:, 0]  # (rows, D) view
        self.patches = torch.empty(rows, P, P, dtype=weight.dtype)
        self.flat = self.patches.view(rows, P * P)
        self._tensors = [t for t in (weight, bias, model.pos_embed.pos_embed) if t is not None]
        self._key = self._parameter_key()
        self._hook_dicts = _hook_dicts(pe)

    def _parameter_key(self) -> tuple:
        return (_REGISTRATIONS[0], *map(_DATA_PTR, self._tensors))

    def usable(self, frames: torch.Tensor) -> bool:
        """``AudioMamba.streaming_embedding_applies`` for these frames (the model's layout was
        checked when the runtime was built), and the parameters are the ones bound."""
        return (frames.dtype == self.patches.dtype and fused_inference_path(frames)
                and not any(self._hook_dicts) and self._parameter_key() == self._key)

    def __call__(self, frames: torch.Tensor) -> torch.Tensor:
        """frames (P, F) normalised log-mel of one column -> tokens (1, rows, D)."""
        P, rows = self.P, self.rows
        self.patches.copy_(frames[:, :rows * P].view(P, rows, P).permute(1, 2, 0))
        out = (self.flat @ self.w_t if self.bias is None
               else torch.addmm(self.bias, self.flat, self.w_t))
        out += self.pos
        return out.unsqueeze(0)


__all__ = ["ColumnEmbedding", "HopPlan", "plan_applies"]
