"""Patch embedding, token ordering, class tokens and position embeddings.

Input spectrograms are ``(B, T, F)``: frames x mel bins, bin 0 the lowest band. The patch grid
is ``(F', T')`` = (frequency rows, time columns) of 16x16 patches. Token orders:

* ``freq_major`` (official): ``n = f * T' + t``, the whole time axis of row 0 first;
* ``time_major`` (streaming): ``n = t * F' + f``, one column of F' tokens after another, so new
  audio appends tokens at the end of the sequence.

Position embeddings are stored in AuM's *prefix layout*: the rows of the class token(s) first,
then one row per patch (``grid``: in frequency-major grid order, ``F' * T'`` rows) or one row per
frequency row (``freq_rows``: ``F'`` rows, no absolute time, for unbounded streams).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..config import AuMConfig
from ..ops.dispatch import fused_inference_path


class PatchEmbed(nn.Module):
    """Conv2d(1 -> D, kernel = stride = patch) over the (B, 1, F, T) spectrogram image.

    On the CPU inference path (``dispatch.fused_inference_path``, the switch the mixers use)
    the same map runs as one matmul over the unfolded patches: a streaming hop's single
    column (8 patches) cost 0.4-0.8 ms in oneDNN's convolution (a strided, non-contiguous
    image) against ~0.04 ms as a matmul, about 6% of a default-model hop. Equal up to float32
    summation order (tested); training and export keep the convolution."""

    def __init__(self, patch_size: int, embed_dim: int) -> None:
        super().__init__()
        self.patch_size = patch_size
        self.proj = nn.Conv2d(1, embed_dim, kernel_size=patch_size, stride=patch_size)

    def forward(self, fbank: torch.Tensor) -> torch.Tensor:
        """(B, T, F) -> patch grid (B, D, F', T'); trailing frames/bins that do not fill a patch drop."""
        if fused_inference_path(fbank):
            return self.forward_unfolded(fbank)
        return self.proj(fbank.unsqueeze(1).transpose(2, 3))

    def forward_unfolded(self, fbank: torch.Tensor) -> torch.Tensor:
        """``forward`` as a matmul (``embed_patches``), as the (B, D, F', T') grid."""
        return self.embed_patches(fbank, time_major=False).permute(0, 3, 1, 2)

    def embed_patches(self, fbank: torch.Tensor, *, time_major: bool) -> torch.Tensor:
        """The patch embeddings as one matmul over the unfolded patches: (B, T, F) ->
        (B, T', F', D) with ``time_major`` (columns outermost: a streaming model's token
        order), else (B, F', T', D). Patch (f, t) is the flattened block
        ``fbank[:, t*P:(t+1)*P, f*P:(f+1)*P]`` read in the conv weight's (freq, time) order."""
        P = self.patch_size
        B, T, F_ = fbank.shape
        cols, rows = T // P, F_ // P
        blocks = fbank[:, :cols * P, :rows * P].reshape(B, cols, P, rows, P)
        patches = (blocks.permute(0, 1, 3, 4, 2) if time_major
                   else blocks.permute(0, 3, 1, 4, 2)).reshape(B * rows * cols, P * P)
        weight = self.proj.weight.reshape(self.proj.weight.shape[0], P * P)
        bias = self.proj.bias
        out = (patches @ weight.t() if bias is None else torch.addmm(bias, patches, weight.t()))
        return out.view(B, cols, rows, -1) if time_major else out.view(B, rows, cols, -1)


def grid_to_tokens(grid: torch.Tensor, order: str) -> torch.Tensor:
    """(B, D, F', T') -> (B, N, D) in ``freq_major`` (n = f*T'+t) or ``time_major`` (n = t*F'+f)."""
    if order == "time_major":
        grid = grid.transpose(2, 3)
    return grid.flatten(2).transpose(1, 2)


def resample_pos_grid(pos: torch.Tensor, num_prefix: int, old_grid: tuple[int, int],
                      new_grid: tuple[int, int]) -> torch.Tensor:
    """Official grid resampling (timm ``resample_abs_pos_embed``): prefix rows kept, patch rows
    (frequency-major, ``old_grid`` = (F', T')) resized bilinearly with antialiasing.

    pos: (1, num_prefix + F'*T', D) -> (1, num_prefix + F_new*T_new, D).
    """
    if tuple(old_grid) == tuple(new_grid):
        return pos
    prefix, patches = pos[:, :num_prefix], pos[:, num_prefix:]
    dim = pos.shape[-1]
    dtype = patches.dtype
    image = patches.float().reshape(1, old_grid[0], old_grid[1], dim).permute(0, 3, 1, 2)
    image = F.interpolate(image, size=tuple(new_grid), mode="bilinear", antialias=True)
    patches = image.permute(0, 2, 3, 1).reshape(1, new_grid[0] * new_grid[1], dim).to(dtype)
    return torch.cat([prefix, patches], dim=1)


class PosEmbed(nn.Module):
    """Holds ``pos_embed`` (1, prefix + rows, D) in prefix layout (official parameter name)."""

    def __init__(self, config: AuMConfig) -> None:
        super().__init__()
        self.kind = config.pos_embed
        self.num_prefix = config.num_prefix_tokens
        rows = config.num_patches if self.kind == "grid" else config.freq_patches
        self.grid = (config.freq_patches, config.time_patches)
        self.pos_embed = nn.Parameter(torch.zeros(1, self.num_prefix + rows, config.embed_dim))
        nn.init.trunc_normal_(self.pos_embed, std=0.02)

    def patch_positions(self, freq_rows: int, time_cols: int) -> torch.Tensor:
        """Position rows of the patches, (F', T', D), aligned with the patch grid."""
        rows = self.pos_embed[0, self.num_prefix:]
        if self.kind == "grid":
            return rows.reshape(self.grid[0], self.grid[1], -1)[:freq_rows, :time_cols]
        return rows[:freq_rows, None, :].expand(freq_rows, time_cols, rows.shape[-1])

    def prefix_positions(self) -> torch.Tensor:
        """(num_prefix, D): class token position rows (head first for a double cls)."""
        return self.pos_embed[0, : self.num_prefix]
