"""The streaming front end's fused fbank (``ops.fbank_fused_cpu``) against the op-for-op Kaldi
fbank (``features.kaldi_fbank_unchecked``, itself bit-identical to torchaudio)."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from streaming_aum.audio_constants import FRAME_SAMPLES, HOP_SAMPLES, N_FFT, PREEMPHASIS
from streaming_aum.features import _fbank_constants, kaldi_fbank_unchecked, normalize
from streaming_aum.ops.fbank_fused_cpu import _pre_fft_kernel, _sparse_mel, fbank_frames_fused


def signals(n: int) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(n)
    t = torch.arange(n, dtype=torch.float64) / 16000
    return {
        "noise": 0.1 * torch.randn(n, generator=g),
        "tone": (0.5 * torch.sin(2 * math.pi * 440 * t)).float(),
        "quiet_dc": 1e-4 * torch.randn(n, generator=g) + 0.3,  # tiny signal on a big offset
        "silence": torch.zeros(n),
        "loud": torch.sign(torch.randn(n, generator=g)),
    }


@pytest.mark.parametrize("n", [FRAME_SAMPLES, 2800, 16000 * 3 + 123])
def test_fused_fbank_matches_the_op_for_op_fbank(n):
    """Within the streaming front end's frame tolerance (2e-6 absolute, 1e-6 relative), raw
    and normalised, on noise, a tone, a quiet signal on a DC offset, silence (every bin at the
    log floor) and a full-scale signal."""
    for name, w in signals(n).items():
        ref = kaldi_fbank_unchecked(w)
        got = fbank_frames_fused(w)
        assert got.shape == ref.shape == (1 + (n - FRAME_SAMPLES) // HOP_SAMPLES, 128), name
        torch.testing.assert_close(got, ref, atol=2e-6, rtol=1e-6, msg=name)
        normed = fbank_frames_fused(w, mean=-6.845978, std=5.5654526)
        torch.testing.assert_close(normed, normalize(ref, "speechcommands"), atol=1e-6,
                                   rtol=1e-6, msg=name)


def test_fft_input_is_bit_identical_to_the_torch_ops():
    """DC removal, pre-emphasis, window and padding round exactly as the torch ops do, so the
    FFT sees the same bits (all later differences are a few ulp of positive sums)."""
    window, _, _ = _fbank_constants(torch.float32)
    for name, w in signals(5000).items():
        k = 1 + (w.shape[0] - FRAME_SAMPLES) // HOP_SAMPLES
        frames = w.as_strided((k, FRAME_SAMPLES), (HOP_SAMPLES, 1))
        dc = torch.mean(frames, dim=1)
        x = frames - dc.unsqueeze(1)
        previous = F.pad(x.unsqueeze(0), (1, 0), mode="replicate").squeeze(0)
        x = (x - PREEMPHASIS * previous[:, :-1]) * window
        want = F.pad(x, (0, N_FFT - FRAME_SAMPLES))
        got = torch.full((k, N_FFT), float("nan"))
        _pre_fft_kernel(w.numpy(), dc.numpy(), _sparse_mel()[0], got.numpy())
        assert torch.equal(got, want), name


def test_fused_fbank_rejects_what_it_cannot_take():
    with pytest.raises(ValueError, match="float32"):
        fbank_frames_fused(torch.zeros(500, dtype=torch.float64))
    with pytest.raises(ValueError, match="n >= 400"):
        fbank_frames_fused(torch.zeros(399))


def test_streamed_frames_equal_the_offline_fused_frames_bit_for_bit():
    """Random chunkings of a stream give exactly the frames the offline features of a
    streaming-layout model are made of (each frame from its own samples, the same way)."""
    import random

    from streaming_aum.streaming_features import StreamingFbank

    g = torch.Generator().manual_seed(0)
    for n in [FRAME_SAMPLES, 5000, 48000]:
        x = 0.2 * torch.randn(n, generator=g)
        rng = random.Random(n)
        fb, outs, i = StreamingFbank(), [], 0
        while i < n:
            step = rng.randint(0, 3000)
            outs.append(fb.push(x[i:i + step]))
            i += step
        assert torch.equal(torch.cat(outs), fbank_frames_fused(x)), n
