"""Audio input at the package boundary: files and arrays in, mono float32 at 16 kHz out.

Everything inside the package works on ``(n,)`` float32 tensors of samples at
:data:`~streaming_aum.audio_constants.SAMPLE_RATE` (16 kHz), in ``[-1, 1]`` for PCM sources.
This module converts the outside world into that form and rejects, with an
:class:`~streaming_aum.errors.AudioInputError` that says what was found and what is accepted,
anything that cannot be used: missing or unreadable files, empty audio, NaN/Inf samples,
unsupported dtypes or shapes, and sample rates out of range.

Conventions:

* integer PCM is scaled like ``torchaudio.load(normalize=True)`` and soundfile's float reading:
  int16 / 32768, int32 / 2147483648, unsigned 8-bit as (x - 128) / 128;
* multi-channel arrays are ``(channels, n)``; files are read as ``(n, channels)`` by soundfile and
  transposed here;
* resampling is ``torchaudio.functional.resample`` (windowed sinc, Hann, width 6, rolloff 0.99).
"""

from __future__ import annotations

import os
from typing import Any, Literal

import numpy as np
import soundfile as sf
import torch
import torchaudio.functional as taf

from streaming_aum.audio_constants import SAMPLE_RATE
from streaming_aum.errors import AudioInputError

__all__ = [
    "ACCEPTED_DTYPES",
    "MAX_CHANNELS",
    "MAX_SAMPLE_RATE",
    "MIN_SAMPLE_RATE",
    "MixMode",
    "check_sample_rate",
    "load_audio",
    "resample",
    "supported_formats",
    "to_float32",
    "to_mono",
    "validate_waveform",
]

MixMode = Literal["mean", "first"]
MIX_MODES: tuple[str, ...] = ("mean", "first")

MIN_SAMPLE_RATE: int = 1_000  # Hz
MAX_SAMPLE_RATE: int = 384_000  # Hz
MAX_CHANNELS: int = 64  # more "channels" than this almost surely means an (n, channels) array

# dtype name -> (offset, scale): float32 value = (x - offset) / scale
_INT_PCM: dict[str, tuple[float, float]] = {
    "int16": (0.0, 32768.0),
    "int32": (0.0, 2147483648.0),
    "uint8": (128.0, 128.0),
}
_FLOATS: tuple[str, ...] = ("float16", "float32", "float64")
ACCEPTED_DTYPES: tuple[str, ...] = tuple(_INT_PCM) + _FLOATS


# --------------------------------------------------------------------------------------------
# dtype and channel conversion
# --------------------------------------------------------------------------------------------


def _dtype_name(samples: np.ndarray | torch.Tensor) -> str:
    """``'int16'``, ``'float32'``, ... for numpy arrays and torch tensors alike."""
    if isinstance(samples, torch.Tensor):
        return str(samples.dtype).removeprefix("torch.")
    return np.dtype(samples.dtype).name


def to_float32(samples: np.ndarray | torch.Tensor) -> torch.Tensor:
    """Convert PCM or float samples to a float32 tensor of the same shape.

    Args:
        samples: numpy array or torch tensor, shape ``(n,)`` or ``(channels, n)`` (any shape is
            kept as is). Accepted dtypes: int16 (÷ 32768), int32 (÷ 2147483648), uint8 (unsigned
            8-bit PCM, (x − 128) / 128), float16/float32/float64 (cast to float32, not rescaled).

    Returns:
        float32 tensor, same shape (and device, for tensors). Values are not checked for
        finiteness here; see :func:`validate_waveform`.

    Raises:
        AudioInputError: for any other type or dtype (bool, complex, int8, int64, object, ...).
    """
    if not isinstance(samples, (np.ndarray, torch.Tensor)):
        raise AudioInputError(
            f"audio samples must be a numpy array or a torch tensor; got {type(samples).__name__}"
        )
    name = _dtype_name(samples)
    if name not in ACCEPTED_DTYPES:
        raise AudioInputError(
            f"audio samples have dtype {name}; accepted dtypes are {', '.join(ACCEPTED_DTYPES)} "
            "(integer PCM is scaled to [-1, 1], floats are cast to float32 unscaled)"
        )
    if isinstance(samples, torch.Tensor):
        x = samples.detach()
        if name in _INT_PCM:
            offset, scale = _INT_PCM[name]
            # float64 intermediate: int32 values need more than float32's 24-bit mantissa
            return ((x.to(torch.float64) - offset) / scale).to(torch.float32).contiguous()
        return x.to(torch.float32).contiguous()
    arr = np.asarray(samples)
    if name in _INT_PCM:
        offset, scale = _INT_PCM[name]
        out = ((arr.astype(np.float64) - offset) / scale).astype(np.float32)
    else:
        out = arr.astype(np.float32)  # always a fresh, native-endian, writable copy
    return torch.from_numpy(np.ascontiguousarray(out))


def _check_mix(mix: str) -> None:
    if mix not in MIX_MODES:
        raise AudioInputError(f"mix={mix!r} is not supported; use one of {MIX_MODES}")


def to_mono(samples: np.ndarray | torch.Tensor, mix: MixMode = "mean") -> torch.Tensor:
    """Mix ``(n,)`` or ``(channels, n)`` samples down to one ``(n,)`` float32 channel.

    Args:
        samples: anything :func:`to_float32` accepts, 1-D ``(n,)`` or 2-D ``(channels, n)``.
        mix: ``"mean"`` averages the channels; ``"first"`` keeps channel 0 only, which is what
            the official AuM loader effectively does (Kaldi fbank with ``channel=-1`` -> 0).

    Raises:
        AudioInputError: for 0-D or 3-D+ input, zero channels, more than :data:`MAX_CHANNELS`
            channels (most likely an ``(n, channels)`` array that needs transposing), or an
            unknown ``mix``.
    """
    _check_mix(mix)
    x = to_float32(samples)
    if x.dim() == 1:
        return x
    if x.dim() != 2:
        raise AudioInputError(
            f"audio has shape {tuple(x.shape)} ({x.dim()}-D); accepted shapes are (n,) and (channels, n)"
        )
    channels = x.shape[0]
    if channels == 0:
        raise AudioInputError(f"audio has shape {tuple(x.shape)}: no channels; expected (channels, n)")
    if channels > MAX_CHANNELS:
        raise AudioInputError(
            f"audio has shape {tuple(x.shape)}: {channels} channels is more than {MAX_CHANNELS}; "
            "multi-channel audio must be (channels, n) -- transpose an (n, channels) array first"
        )
    if mix == "first" or channels == 1:
        return x[0].contiguous()
    return x.mean(dim=0)


# --------------------------------------------------------------------------------------------
# validation and resampling
# --------------------------------------------------------------------------------------------


def check_sample_rate(rate: Any, name: str = "sample rate") -> int:
    """Return ``rate`` as an int if it is an integer in ``[MIN_SAMPLE_RATE, MAX_SAMPLE_RATE]`` Hz.

    Integral floats (``16000.0``) are accepted; bools, fractions and out-of-range values raise
    :class:`AudioInputError`.
    """
    ok = isinstance(rate, (int, float, np.integer, np.floating)) and not isinstance(rate, (bool, np.bool_))
    if ok:
        ok = bool(np.isfinite(rate)) and float(rate) == int(rate)
    if not ok:
        raise AudioInputError(f"{name} must be a positive integer number of Hz; got {rate!r}")
    value = int(rate)
    if not MIN_SAMPLE_RATE <= value <= MAX_SAMPLE_RATE:
        raise AudioInputError(
            f"{name} {value} Hz is out of the supported range [{MIN_SAMPLE_RATE}, {MAX_SAMPLE_RATE}] Hz"
        )
    return value


def validate_waveform(
    x: Any, *, min_samples: int = 1, name: str = "audio", reason: str | None = None
) -> torch.Tensor:
    """Check that ``x`` is usable audio and return it as a contiguous float32 ``(n,)`` tensor.

    Args:
        x: a 1-D floating-point torch tensor of samples.
        min_samples: the fewest samples accepted (at least 1: empty audio is always an error).
        name: what to call ``x`` in error messages.
        reason: what ``min_samples`` is needed for, appended to the too-short message
            (e.g. ``"one fbank frame"``).

    Raises:
        AudioInputError: not a tensor, not floating point, not 1-D, empty or shorter than
            ``min_samples``, or containing NaN/Inf (the message gives the count and first index).
    """
    if not isinstance(x, torch.Tensor):
        raise AudioInputError(f"{name} must be a torch tensor of float samples; got {type(x).__name__}")
    if not x.is_floating_point():
        raise AudioInputError(
            f"{name} has dtype {_dtype_name(x)}; a floating-point waveform is required "
            "(convert integer PCM with streaming_aum.audio_io.to_float32)"
        )
    if x.dim() != 1:
        raise AudioInputError(
            f"{name} has shape {tuple(x.shape)}; a 1-D (n,) mono waveform is required "
            "(mix channels down with streaming_aum.audio_io.to_mono)"
        )
    n = x.shape[0]
    need = max(1, int(min_samples))
    if n < need:
        found = "is empty (0 samples)" if n == 0 else f"has {n} samples"
        why = f" for {reason}" if reason else ""
        raise AudioInputError(
            f"{name} {found}; at least {need} samples ({need / SAMPLE_RATE:g} s at "
            f"{SAMPLE_RATE // 1000} kHz) are needed{why}"
        )
    check_finite(x, name)
    return x.to(torch.float32).contiguous()


def check_finite(x: torch.Tensor, name: str = "audio", note: str = "") -> None:
    """Raise ``AudioInputError`` naming the count and first index of NaN/Inf samples in 1-D ``x``."""
    if (x.device.type == "cpu" and x.dtype in (torch.float32, torch.float64)
            and not x.requires_grad):
        # numpy's isfinite + all: one pass, no intermediate tensors (a streamed chunk is
        # checked on every push; the torch form was three dispatched ops)
        if np.isfinite(x.numpy()).all():
            return
    bad = ~torch.isfinite(x)
    if bool(bad.any()):
        idx = torch.nonzero(bad).flatten()
        raise AudioInputError(
            f"{name} contains {idx.numel()} NaN/Inf samples (first at index {int(idx[0])}); "
            f"all samples must be finite{note}"
        )


def resample(waveform: torch.Tensor, orig_rate: int, target_rate: int) -> torch.Tensor:
    """Resample ``(n,)`` or ``(channels, n)`` float audio from ``orig_rate`` to ``target_rate`` Hz.

    Uses ``torchaudio.functional.resample`` with its defaults (Hann-windowed sinc, 6 zero
    crossings, rolloff 0.99). Output length is ``ceil(n * target_rate / orig_rate)``. When the
    rates are equal the input is returned as float32 unchanged.

    Raises:
        AudioInputError: rates that are not integers in ``[1000, 384000]`` Hz, or a waveform
            that is not a floating-point tensor.
    """
    orig = check_sample_rate(orig_rate, "orig_rate")
    target = check_sample_rate(target_rate, "target_rate")
    if not isinstance(waveform, torch.Tensor) or not waveform.is_floating_point():
        found = _dtype_name(waveform) if isinstance(waveform, (torch.Tensor, np.ndarray)) else type(waveform).__name__
        raise AudioInputError(f"resample needs a floating-point torch tensor; got {found}")
    w = waveform.to(torch.float32)
    if orig == target:
        return w
    return taf.resample(w, orig, target)


# --------------------------------------------------------------------------------------------
# files
# --------------------------------------------------------------------------------------------


def supported_formats() -> list[str]:
    """Container formats the installed libsndfile can read (e.g. WAV, FLAC, OGG, MP3)."""
    return sorted(sf.available_formats())


def _read_file(path: str) -> tuple[np.ndarray, int]:
    """``(frames, channels)`` float32 samples and the file's sample rate, or AudioInputError."""
    if not os.path.exists(path):
        raise AudioInputError(f"audio file not found: {path!r}")
    if os.path.isdir(path):
        raise AudioInputError(f"audio path is a directory, not a file: {path!r}")
    try:
        data, rate = sf.read(path, dtype="float32", always_2d=True)
    except (sf.SoundFileError, RuntimeError, OSError, ValueError, TypeError) as exc:
        raise AudioInputError(
            f"cannot read audio file {path!r} ({exc}); readable formats with this libsndfile "
            f"{sf.__libsndfile_version__}: {', '.join(supported_formats())}"
        ) from exc
    return data, int(rate)


def load_audio(
    path: str | os.PathLike[str], *, target_rate: int = SAMPLE_RATE, mix: MixMode = "mean"
) -> torch.Tensor:
    """Read an audio file as mono float32 samples at ``target_rate`` Hz, shape ``(n,)``.

    Args:
        path: a file libsndfile can read (WAV, FLAC, OGG/Vorbis, MP3 where supported, ...).
            Integer PCM is scaled to [-1, 1] like ``torchaudio.load`` (int16 / 32768).
        target_rate: output sample rate in Hz (default 16 kHz, the model's rate).
        mix: ``"mean"`` averages channels; ``"first"`` keeps channel 0 (the official AuM loader's
            behaviour on multi-channel files). Both are identical for mono files.

    Raises:
        AudioInputError: missing file, unreadable/corrupt/unsupported file, no samples, NaN/Inf
            samples, unknown ``mix`` or a sample rate out of range.
    """
    _check_mix(mix)
    target = check_sample_rate(target_rate, "target_rate")
    p = os.fspath(path)
    data, rate = _read_file(p)
    if data.shape[0] == 0 or data.shape[1] == 0:
        raise AudioInputError(f"audio file {p!r} contains no samples")
    mono = to_mono(torch.from_numpy(np.ascontiguousarray(data.T)), mix=mix)
    validate_waveform(mono, name=f"audio file {p!r}")
    rate = check_sample_rate(rate, f"sample rate of {p!r}")
    return resample(mono, rate, target)

