"""A batched, exportable Kaldi log-mel fbank: ``(B, N)`` samples -> ``(B, T, 128)`` log-mel.

It reproduces :func:`streaming_aum.features.kaldi_fbank` (``torchaudio.compliance.kaldi.fbank``
with AuM's options) with plain tensor ops that ``torch.onnx.export(dynamo=True)`` turns into
ONNX nodes with a dynamic batch and a dynamic sample axis, so that a consumer of an exported
graph needs no Python audio code (``aum export --waveform``):

* framing (25 ms = 400 samples, 10 ms = 160-sample shift, ``snip_edges``): one ``Gather`` with
  an index grid built from ``arange`` of the symbolic frame count (no Python loop over time,
  which would silently fix the length, see ``docs/packaging.md`` section 6);
* per-frame DC removal, pre-emphasis 0.97 (``x[j] - 0.97 x[max(j - 1, 0)]``), the symmetric
  Hann window of Kaldi's ``window_type="hanning"`` (what ``kaldi_fbank`` asks for), in
  torchaudio's order, so the windowed frames are the same float32 numbers;
* the 512-point power spectrum as one matmul with a precomputed ``[cos | sin]`` matrix
  (400 x 512: the frame's 112 zero-padding samples contribute nothing, and the Nyquist bin is
  dropped because every Kaldi mel filter is zero there);
* the 128 Kaldi mel filters from 20 Hz to 8 kHz (torchaudio's own ``get_mel_banks``), then
  ``log(max(E, eps))`` with float32's machine epsilon (``LOG_FLOOR``); no dither.

Units. Inputs are samples at :data:`SAMPLE_RATE` (16 kHz), nominally in ``[-1, 1]``; outputs
are natural-log mel energies (power spectrum, unnormalised DFT), the units of ``kaldi_fbank``.

Accuracy (measured, see ``tests/test_onnx_waveform.py``). In float64 this module equals
torchaudio's fbank run in float64 to ~1e-12: the definition is the same. In float32 both are
float32 approximations of that value, ours with a DFT matmul, torchaudio's with an FFT, and they
agree to <= 1e-4 (measured <= 4e-5) on every mel energy that float32 can resolve, i.e. at least
1e-6 (~8 float32 eps) of its frame's spectral energy (86-98 % of the entries of speech and noise
clips). Below that an entry is rounding noise in any float32 implementation: torchaudio's own
float32 values there are up to ~2e-3 from float64 (spectral near-zeros, near-silent frames, the
lowest filters, which see one pre-emphasis-attenuated DFT bin each), and ours are about as far
(0.2x to 2x torchaudio's own error in 30 one-second trials, median 0.8x). Normalised by
``2 * std`` (~9) such entries move the model's input by ~1e-4 at most and its logits far less
(the exports' logits equal the PyTorch pipeline's to ~1e-6).

Lengths. Frame ``t`` covers samples ``[160 t, 160 t + 400)``; ``T = 1 + (N - 400) // 160``.
All rows of a batch share one ``N`` (a tensor cannot be ragged); padding a row with samples
would change its clip mean and add frames, so callers batch equal lengths only. ``N >= 400``
is required; :func:`batched_kaldi_fbank` checks it
(:class:`~streaming_aum.errors.AudioInputError`), an exported graph cannot, so its callers must.
"""

from __future__ import annotations

import math

import torch

from streaming_aum.audio_constants import (FRAME_SAMPLES, HOP_SAMPLES, N_FFT, PREEMPHASIS,
                                           SAMPLE_RATE)
from streaming_aum.errors import AudioInputError, ConfigError
from streaming_aum.features import NormStats, kaldi_mel_banks, kaldi_window

__all__ = [
    "FLOAT32_EPS",
    "BatchedFbank",
    "BatchedFrontEnd",
    "batched_kaldi_fbank",
    "dft_matrix",
    "frame_count",
    "hann_window",
    "mel_matrix",
    "validate_batch",
]

N_BINS: int = N_FFT // 2  # 256 spectrum bins used (the Nyquist bin has zero mel weight)
#: Kaldi's log floor, float32's machine epsilon exactly (``LOG_FLOOR`` is it to 8 digits)
FLOAT32_EPS: float = float(torch.finfo(torch.float32).eps)


def frame_count(num_samples: int | torch.SymInt) -> int | torch.SymInt:
    """``1 + (N - 400) // 160``: Kaldi frames (snip edges) in ``N >= 400`` samples; symbolic
    while exporting (:func:`streaming_aum.audio_constants.num_frames` is the checked twin)."""
    return (num_samples - FRAME_SAMPLES) // HOP_SAMPLES + 1


def dft_matrix(dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """``(FRAME_SAMPLES, 2 * N_BINS)`` = (400, 512) ``[cos | sin]`` of the 512-point DFT.

    Column ``k < 256`` is ``cos(2 pi k n / 512)``, column ``256 + k`` is ``sin(2 pi k n / 512)``
    for sample ``n`` of the frame; the angles are reduced modulo 512 and evaluated in float64,
    then rounded to ``dtype``.
    """
    n = torch.arange(FRAME_SAMPLES, dtype=torch.int64).unsqueeze(1)
    k = torch.arange(N_BINS, dtype=torch.int64).unsqueeze(0)
    angle = (2.0 * math.pi / N_FFT) * ((n * k) % N_FFT).to(torch.float64)
    return torch.cat([angle.cos(), angle.sin()], dim=1).to(dtype)


def mel_matrix(dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """``(N_BINS, N_MELS)`` = (256, 128) Kaldi mel filters (20 Hz to Nyquist): torchaudio's
    ``get_mel_banks`` transposed (computed in float32 there whatever the input dtype, then
    cast), so a power spectrum ``(.., 256) @ mel -> (.., 128)`` mel energies."""
    return kaldi_mel_banks(dtype).t().contiguous()


def hann_window(dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """``(FRAME_SAMPLES,)`` symmetric Hann window, Kaldi's ``window_type="hanning"``
    (:func:`streaming_aum.features.kaldi_window`, the eager fbank's own)."""
    return kaldi_window(dtype)


def validate_batch(waveform: object, min_samples: int = FRAME_SAMPLES,
                   name: str = "waveform") -> torch.Tensor:
    """Check an eager ``(B, N)`` batch of float samples at 16 kHz; returns contiguous float32.

    Raises:
        AudioInputError: not a floating-point tensor, not 2-D, an empty batch, fewer than
            ``min_samples`` samples per row, or NaN/Inf values.
    """
    if not isinstance(waveform, torch.Tensor) or not waveform.is_floating_point():
        found = (f"dtype {waveform.dtype}" if isinstance(waveform, torch.Tensor)
                 else type(waveform).__name__)
        raise AudioInputError(f"{name} must be a floating-point torch tensor; got {found}")
    if waveform.dim() != 2 or waveform.shape[0] < 1:
        raise AudioInputError(f"{name} must be (B, N) samples at {SAMPLE_RATE} Hz with B >= 1; "
                              f"got shape {tuple(waveform.shape)}")
    n = waveform.shape[1]
    if n < min_samples:
        why = " for one fbank frame" if min_samples == FRAME_SAMPLES else ""
        raise AudioInputError(f"{name} has {n} samples per row; at least {min_samples} "
                              f"({min_samples / SAMPLE_RATE:g} s at {SAMPLE_RATE // 1000} kHz) "
                              f"are needed{why}")
    bad = int((~torch.isfinite(waveform)).sum())
    if bad:
        raise AudioInputError(f"{name} contains {bad} NaN/Inf samples")
    return waveform.to(torch.float32).contiguous()


class BatchedFbank(torch.nn.Module):
    """Kaldi log-mel fbank of AuM, batched: ``(B, N)`` samples at 16 kHz -> ``(B, T, 128)``.

    ``forward`` has no data-dependent checks (it is traced for export); use
    :func:`batched_kaldi_fbank` for checked eager calls.

    Args:
        remove_clip_dc: subtract each row's mean over all ``N`` samples first (the official
            pipeline); ``False`` keeps every frame dependent on its own samples only (streaming).
        dtype: of the constants and so of the computation: float32 (torchaudio's precision, and
            the export's) or float64 (to check the definition against torchaudio in float64).
    """

    def __init__(self, remove_clip_dc: bool = True, dtype: torch.dtype = torch.float32) -> None:
        super().__init__()
        self.remove_clip_dc = bool(remove_clip_dc)
        self.register_buffer("window", hann_window(dtype), persistent=False)
        self.register_buffer("dft", dft_matrix(dtype), persistent=False)
        self.register_buffer("mel", mel_matrix(dtype), persistent=False)
        self.register_buffer("offsets", torch.arange(FRAME_SAMPLES), persistent=False)

    def centre(self, waveform: torch.Tensor) -> torch.Tensor:
        """Clip DC removal per row when ``remove_clip_dc``: ``(B, N)`` -> ``(B, N)``."""
        if self.remove_clip_dc:
            return waveform - waveform.mean(dim=1, keepdim=True)
        return waveform

    def frames(self, waveform: torch.Tensor, num_frames: int | torch.SymInt,
               clamp: bool = False) -> torch.Tensor:
        """``(B, N)`` -> ``(B, num_frames, 400)``: frame ``t`` is samples ``[160 t, 160 t + 400)``.

        ``clamp``: indices past ``N - 1`` read sample ``N - 1`` (for the fixed-length path of
        :class:`BatchedFrontEnd`, which replaces those frames by padding afterwards)."""
        starts = torch.arange(num_frames, device=waveform.device) * HOP_SAMPLES
        index = starts.unsqueeze(1) + self.offsets.unsqueeze(0)  # (T, 400)
        if clamp:
            index = index.clamp(max=waveform.shape[1] - 1)
        return waveform[:, index]

    def power_spectrum(self, frames: torch.Tensor) -> torch.Tensor:
        """``(B, T, 400)`` raw frames -> ``(B, T, 256)`` power of DFT bins 0..255 (0 to
        7969 Hz in 31.25 Hz steps) after frame DC removal, pre-emphasis and the window."""
        x = frames - frames.mean(dim=-1, keepdim=True)
        previous = torch.cat([x[..., :1], x[..., :-1]], dim=-1)
        x = (x - PREEMPHASIS * previous) * self.window
        spec = torch.matmul(x, self.dft)  # (B, T, 512): real | imaginary (sign irrelevant)
        return spec[..., :N_BINS].square() + spec[..., N_BINS:].square()

    def mel_energies(self, frames: torch.Tensor) -> torch.Tensor:
        """``(B, T, 400)`` raw frames -> ``(B, T, 128)`` linear mel energies."""
        return torch.matmul(self.power_spectrum(frames), self.mel)

    def log_mel(self, frames: torch.Tensor) -> torch.Tensor:
        """``(B, T, 400)`` raw frames -> ``(B, T, 128)`` log-mel: ``log(max(E, eps))``."""
        return self.mel_energies(frames).clamp_min(FLOAT32_EPS).log()

    def forward(self, waveform: torch.Tensor) -> torch.Tensor:
        """``(B, N)`` samples at 16 kHz, ``N >= 400`` -> ``(B, T, 128)`` log-mel,
        ``T = 1 + (N - 400) // 160``."""
        w = self.centre(waveform)
        return self.log_mel(self.frames(w, frame_count(w.shape[1])))


class BatchedFrontEnd(torch.nn.Module):
    """``features.waveform_to_features``, batched and exportable: ``(B, N)`` float32 samples at
    16 kHz -> normalised ``(B, T', 128)`` model input.

    Args:
        stats: the normalisation, ``(x - mean) / (2 * std)``.
        target_frames: ``None`` keeps all ``T`` frames (``T' = T``); an int ``F`` gives exactly
            ``F`` frames as ``features.pad_or_crop`` does: the first ``F`` frames, and zero rows
            (log-mel domain, before normalisation) after the last real one. Only ``F`` frames
            are computed, whatever ``N`` is; the clip mean still uses all ``N`` samples.
        remove_clip_dc: see :class:`BatchedFbank`.
    """

    def __init__(self, stats: NormStats, target_frames: int | None = None,
                 remove_clip_dc: bool = True) -> None:
        super().__init__()
        if target_frames is not None and (isinstance(target_frames, bool)
                                          or not isinstance(target_frames, int)
                                          or target_frames < 1):
            raise ConfigError(f"target_frames must be None or a positive int (frames of 10 ms); "
                              f"got {target_frames!r}")
        self.fbank = BatchedFbank(remove_clip_dc)
        self.target_frames = target_frames
        self.mean = float(stats.mean)
        self.scale = 2.0 * float(stats.std)

    def forward(self, waveform: torch.Tensor) -> torch.Tensor:
        """``(B, N)`` float32 samples at 16 kHz, ``N >= 400`` -> normalised ``(B, T', 128)``."""
        if self.target_frames is None:
            logmel = self.fbank(waveform)
        else:
            logmel = self._fixed_length(waveform, self.target_frames)
        return (logmel - self.mean) / self.scale

    def _fixed_length(self, waveform: torch.Tensor, target: int) -> torch.Tensor:
        """``(B, N)`` -> ``(B, target, 128)`` log-mel, zero rows past the last real frame."""
        w = self.fbank.centre(waveform)
        real = frame_count(w.shape[1])
        logmel = self.fbank.log_mel(self.fbank.frames(w, target, clamp=True))
        keep = torch.arange(target, device=w.device) < real  # (target,)
        return torch.where(keep.view(1, target, 1), logmel, torch.zeros_like(logmel))


_CACHE: dict[bool, BatchedFbank] = {}


def batched_kaldi_fbank(waveform: torch.Tensor, *, remove_clip_dc: bool = True) -> torch.Tensor:
    """Checked eager :class:`BatchedFbank`: ``(B, N)`` or ``(N,)`` float samples at 16 kHz ->
    ``(B, T, 128)`` (or ``(T, 128)``) float32 log-mel, ``kaldi_fbank`` of each row (see the
    module docstring for the agreement).

    Raises:
        AudioInputError: not a float tensor, not 1-D/2-D, fewer than 400 samples, NaN/Inf.
    """
    single = isinstance(waveform, torch.Tensor) and waveform.dim() == 1
    w = validate_batch(waveform.unsqueeze(0) if single else waveform)
    key = bool(remove_clip_dc)
    module = _CACHE.get(key)
    if module is None:
        module = _CACHE.setdefault(key, BatchedFbank(key))
    with torch.no_grad():
        out = module.to(w.device)(w)
    return out[0] if single else out
