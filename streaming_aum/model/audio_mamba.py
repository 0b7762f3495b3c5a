"""The AudioMamba network: patch tokens -> bidirectional Mamba stack -> pooled head.

``forward(fbank (B, T, F)) -> logits (B, C)`` is the offline model. ``forward_features`` returns
the pooled feature (B, D) and ``forward_head`` maps it to logits (timm's split).
``forward_tokens`` exposes the per-token final features (B, L, D), used for per-column
(frame-wise) scores.

Residual stream (official, ``fused_add_norm`` + ``residual_in_fp32``)::

    r_0 = tokens;  h_0 = mixer_0(norm_0(r_0))
    r_l = r_{l-1} + h_{l-1};  h_l = mixer_l(norm_l(r_l))
    out = norm_f(r_{L-1} + h_{L-1})

with ``r`` kept in float32 (float64 for a float64 model).
"""

from __future__ import annotations

import math

import torch
from torch import nn
from torch.nn.modules import module as module_mod

from ..config import AuMConfig
from ..errors import AudioInputError
from .embed import PatchEmbed, PosEmbed, grid_to_tokens
from .mixer import BiMambaMixer, MixerState
from ..ops.dispatch import fused_inference_path
from ..ops.rmsnorm_fused_cpu import add_rmsnorm_fused
from .norm import RMSNorm


def _hook_dicts(*modules: nn.Module) -> tuple[dict, ...]:
    """The forward (pre-)hook dicts that apply to ``modules``: torch's global ones and each
    module's own. Registering a hook adds to these very dicts, so a holder of the tuple can
    check for hooks with ``any(dicts)`` on every call (``hop_plan``: a replaced module
    registers parameters, which the holder's parameter key sees)."""
    return (module_mod._global_forward_hooks, module_mod._global_forward_pre_hooks,
            *(d for m in modules for d in (m._forward_hooks, m._forward_pre_hooks)))


def _any_hooks(*modules: nn.Module) -> bool:
    """Whether a forward (pre-)hook, global or on one of ``modules``, would be skipped by a
    path that computes these modules' outputs without calling them."""
    return any(_hook_dicts(*modules))


class Block(nn.Module):
    """Add -> RMSNorm -> mixer, with the residual carried separately (Vim/AuM ``Block``)."""

    def __init__(self, config: AuMConfig) -> None:
        super().__init__()
        self.mixer = BiMambaMixer(config.embed_dim, kind=config.mixer, d_state=config.d_state,
                                  d_conv=config.d_conv, expand=config.expand,
                                  dt_rank=config.dt_rank)
        self.norm = RMSNorm(config.embed_dim, eps=config.norm_eps)


class AudioMamba(nn.Module):
    def __init__(self, config: AuMConfig) -> None:
        super().__init__()
        config.validate()
        self.config = config
        D = config.embed_dim
        if config.class_token in ("middle", "head", "tail"):
            self.cls_token = nn.Parameter(torch.zeros(1, 1, D))
        elif config.class_token == "double":
            self.cls_token_head = nn.Parameter(torch.zeros(1, 1, D))
            self.cls_token_tail = nn.Parameter(torch.zeros(1, 1, D))
        self.head = nn.Linear(D, config.num_classes)
        self.layers = nn.ModuleList(Block(config) for _ in range(config.depth))
        self.norm_f = RMSNorm(D, eps=config.norm_eps)
        self.patch_embed = PatchEmbed(config.patch_size, D)
        self.pos_embed = PosEmbed(config)
        self._init_weights()

    def _init_weights(self) -> None:
        """Official init (aum-reference.md 5.5); only matters when training from scratch."""
        for name, p in self.named_parameters():
            if name.startswith("cls_token"):
                nn.init.trunc_normal_(p, std=0.02)
        nn.init.trunc_normal_(self.head.weight, std=0.02)
        nn.init.zeros_(self.head.bias)
        for block in self.layers:
            nn.init.kaiming_uniform_(block.mixer.out_proj.weight, a=math.sqrt(5))
            with torch.no_grad():
                block.mixer.out_proj.weight /= math.sqrt(self.config.depth)

    # Input checks -----------------------------------------------------------------------
    def check_input(self, fbank: torch.Tensor) -> None:
        """Raise ``AudioInputError`` unless ``fbank`` is a finite float (B, T, n_mels) tensor the
        position embedding can serve."""
        cfg = self.config
        if not isinstance(fbank, torch.Tensor):
            raise AudioInputError(f"expected a torch.Tensor (B, T, {cfg.n_mels}), got "
                                  f"{type(fbank).__name__}")
        if fbank.dim() != 3 or fbank.shape[-1] != cfg.n_mels:
            raise AudioInputError(f"expected log-mel features of shape (B, T, {cfg.n_mels}), got "
                                  f"{tuple(fbank.shape)}")
        if not fbank.is_floating_point():
            raise AudioInputError(f"expected floating-point features, got {fbank.dtype}")
        frames = fbank.shape[1]
        if frames < cfg.patch_size:
            raise AudioInputError(f"got {frames} frames; at least {cfg.patch_size} frames (one "
                                  "patch column) are needed")
        if cfg.pos_embed == "grid" and frames // cfg.patch_size != cfg.time_patches:
            lo = cfg.time_patches * cfg.patch_size
            raise AudioInputError(
                f"this model's position grid is built for {cfg.spectrogram_frames} frames "
                f"({cfg.time_patches} patch columns, {lo}..{lo + cfg.patch_size - 1} frames "
                f"accepted); got {frames} frames. Pad or crop the features "
                f"(features.pad_or_crop), or load the model with input_frames={frames} to "
                "resample its grid")
        if torch.compiler.is_compiling():  # exporting: no data-dependent checks in the graph
            return
        if not torch.isfinite(fbank).all():
            bad = int((~torch.isfinite(fbank)).sum())
            raise AudioInputError(f"features contain {bad} NaN/Inf values")

    # Tokens -----------------------------------------------------------------------------
    def embed_tokens(self, fbank: torch.Tensor) -> tuple[torch.Tensor, int]:
        """(B, T, F) -> (tokens (B, L, D) with class token(s) and positions, readout index).

        The readout index is the class token's position (``-1`` for double, mean for none).
        """
        cfg = self.config
        if self.streaming_embedding_applies(fbank):
            return self._embed_streaming_layout(fbank), -1
        grid = self.patch_embed(fbank.to(self.patch_embed.proj.weight.dtype))  # (B, D, F', T')
        _, _, n_rows, n_cols = grid.shape
        pos = self.pos_embed.patch_positions(n_rows, n_cols)  # (F', T', D)
        grid = grid + pos.permute(2, 0, 1).unsqueeze(0)
        x = grid_to_tokens(grid, cfg.token_order)
        B, N, D = x.shape
        prefix = self.pos_embed.prefix_positions()
        kind = cfg.class_token
        if kind == "none":
            return x, -1
        if kind == "double":
            head = (self.cls_token_head + prefix[0]).expand(B, 1, D)
            tail = (self.cls_token_tail + prefix[1]).expand(B, 1, D)
            return torch.cat([head, x, tail], dim=1), -1
        cls = (self.cls_token + prefix[0]).expand(B, 1, D)
        at = {"middle": N // 2, "head": 0, "tail": N}[kind]
        return torch.cat([x[:, :at], cls, x[:, at:]], dim=1), at

    def streaming_embedding_applies(self, fbank: torch.Tensor) -> bool:
        """Whether ``embed_tokens(fbank)`` takes ``_embed_streaming_layout``: a streaming-layout
        model on the CPU inference path, no forward hook on the patch embedding."""
        cfg = self.config
        return ((cfg.token_order, cfg.pos_embed, cfg.class_token)
                == ("time_major", "freq_rows", "none") and fused_inference_path(fbank)
                and not _any_hooks(self.patch_embed))

    def _embed_streaming_layout(self, fbank: torch.Tensor) -> torch.Tensor:
        """``embed_tokens`` of a streaming-layout model on the inference path: (B, T, F) ->
        time-major tokens (B, T' * F', D) in one matmul and one add. The patches are unfolded
        straight into token order (``PatchEmbed.embed_patches(time_major=True)``; the grid form
        is frequency-major, which the general path then permutes twice), and each token gets
        its frequency row's position vector. A streaming hop embeds one column per call,
        where the general path's dozen reshapes and permutes cost several times the matmul."""
        tokens = self.patch_embed.embed_patches(fbank.to(self.patch_embed.proj.weight.dtype),
                                                time_major=True)  # (B, T', F', D)
        B, cols, rows, _ = tokens.shape
        pos = self.pos_embed.patch_positions(rows, 1)[:, 0]  # (F', D)
        return (tokens + pos).view(B, cols * rows, -1)

    def run_layers(self, x: torch.Tensor, states: list[MixerState] | None = None,
                   split: int | None = None) -> tuple[torch.Tensor, list[MixerState]]:
        """Residual stream over all layers. x: (B, L, D) -> (norm_f output (B, L, D), states)."""
        if (x.dtype == torch.float32 and fused_inference_path(x)
                and not _any_hooks(self.norm_f, *(b.norm for b in self.layers))):
            return self._run_layers_fused(x, states, split)
        res_dtype = torch.promote_types(x.dtype, torch.float32)
        residual: torch.Tensor | None = None
        hidden = x
        new_states = []
        for i, block in enumerate(self.layers):
            residual = hidden.to(res_dtype) if residual is None else residual + hidden.to(res_dtype)
            normed = block.norm(residual).to(x.dtype)
            hidden, st = block.mixer(normed, None if states is None else states[i], split=split)
            new_states.append(st)
        residual = hidden.to(res_dtype) if residual is None else residual + hidden.to(res_dtype)
        return self.norm_f(residual).to(x.dtype), new_states

    def _run_layers_fused(self, x: torch.Tensor, states: list[MixerState] | None,
                          split: int | None) -> tuple[torch.Tensor, list[MixerState]]:
        """``run_layers`` on the float32 CPU inference path: each residual add and RMSNorm as
        one numba call (``ops.rmsnorm_fused_cpu``), the mixers on their fused path. Same
        arithmetic up to float32 summation order in the norms. Not taken while a forward hook
        watches a norm (the norms are not called as modules here)."""
        residual = x
        hidden: torch.Tensor | None = None
        new_states = []
        for i, block in enumerate(self.layers):
            residual, normed = add_rmsnorm_fused(residual, hidden, block.norm.weight,
                                                 block.norm.eps)
            hidden, st = block.mixer(normed, None if states is None else states[i], split=split)
            new_states.append(st)
        _, out = add_rmsnorm_fused(residual, hidden, self.norm_f.weight, self.norm_f.eps)
        return out, new_states

    def pool(self, tokens: torch.Tensor, readout: int) -> torch.Tensor:
        """(B, L, D) final features -> (B, D) per the class-token mode."""
        kind = self.config.class_token
        if kind == "none":
            return tokens.mean(dim=1)
        if kind == "double":
            return (tokens[:, 0] + tokens[:, -1]) / 2
        return tokens[:, readout]

    # Public API -------------------------------------------------------------------------
    def forward_tokens(self, fbank: torch.Tensor) -> tuple[torch.Tensor, int]:
        self.check_input(fbank)
        x, readout = self.embed_tokens(fbank)
        out, _ = self.run_layers(x)
        return out, readout

    def forward_features(self, fbank: torch.Tensor) -> torch.Tensor:
        """(B, T, F) normalised log-mel -> pooled features (B, D)."""
        tokens, readout = self.forward_tokens(fbank)
        return self.pool(tokens, readout)

    def forward_head(self, features: torch.Tensor) -> torch.Tensor:
        """(B, D) -> logits (B, C)."""
        return self.head(features)

    def forward(self, fbank: torch.Tensor) -> torch.Tensor:
        """(B, T, F) normalised log-mel -> logits (B, C)."""
        return self.forward_head(self.forward_features(fbank))

    def probabilities(self, logits: torch.Tensor) -> torch.Tensor:
        """Logits -> probabilities with the model's output activation (sigmoid or softmax)."""
        if self.config.output_activation == "softmax":
            return torch.softmax(logits, dim=-1)
        return torch.sigmoid(logits)

    @property
    def labels(self) -> list[str]:
        return self.config.labels or [f"class_{i}" for i in range(self.config.num_classes)]
