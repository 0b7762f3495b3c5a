"""Tests of the streaming front end: chunk invariance, offline equality, snapshots, bounds, errors."""

from __future__ import annotations

import io
import math
from itertools import cycle
from pathlib import Path
from typing import Callable, Iterable, Iterator

import numpy as np
import pytest
import torch
import torchaudio.functional as taf
from hypothesis import given, settings
from hypothesis import strategies as st

from streaming_aum.audio_constants import FRAME_SAMPLES, HOP_SAMPLES, N_MELS, SAMPLE_RATE, num_frames
from streaming_aum.audio_io import load_audio
from streaming_aum.errors import AudioInputError, ConfigError
from streaming_aum.features import NORM_PRESETS, NormStats, kaldi_fbank, normalize
from streaming_aum.streaming_features import (
    StreamingFbank,
    StreamingFrontEnd,
    StreamingResampler,
    StreamStateError,
    sinc_resample_kernel,
)

FIXTURES = Path(__file__).parent / "fixtures" / "aum_official"
SAMPLE_AUDIO = load_audio(FIXTURES / "sample.wav")

# Streamed frames are computed by the same Kaldi code on fewer frames at a time, so they agree
# with the offline call up to float32 rounding of batched kernels (observed <= 1e-6 in log-mel,
# i.e. one or two ulps of values up to ~16 in magnitude).
FRAME_ATOL = 2e-6
FRAME_RTOL = 1e-6
SAMPLE_ATOL = 1e-6  # resampler outputs, in [-1, 1] units

FAST = settings(max_examples=25, deadline=None)

# chunk sizes: empty and 1-sample chunks, sizes around the hop and frame, and large ones
chunk_size = st.one_of(
    st.just(0),
    st.just(1),
    st.integers(2, 2 * FRAME_SAMPLES),
    st.integers(2 * FRAME_SAMPLES, 12_000),
)
chunk_plan = st.lists(chunk_size, min_size=1, max_size=12)


@pytest.fixture(autouse=True, scope="module")
def _single_thread() -> Iterator[None]:
    """Streaming pushes run many tiny kernels; on a busy 2-core machine, intra-op threading makes
    each of them wait milliseconds for the pool. Results do not depend on it."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _noise(n: int, seed: int, scale: float = 0.3) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return (scale * torch.randn(n, generator=g)).to(torch.float32)


def _chunks(x: torch.Tensor | np.ndarray, sizes: Iterable[int], min_cycle: int = 1) -> list:
    """Cut ``x`` into consecutive chunks of the given sizes, cycling through them (0-size chunks
    included) until ``x`` is used up; a cycle that would not progress gets ``min_cycle`` added."""
    sizes = list(sizes)
    if sum(sizes) < min_cycle:
        sizes.append(min_cycle)
    out, i = [], 0
    for n in cycle(sizes):
        if i >= len(x):
            break
        out.append(x[i : i + n])
        i += n
    return out


def _stream(push: Callable, chunks: Iterable) -> list[torch.Tensor]:
    return [push(c) for c in chunks]


# ---------------------------------------------------------------------------------------------
# StreamingFbank
# ---------------------------------------------------------------------------------------------


@FAST
@given(n=st.integers(0, 6000), seed=st.integers(0, 2**16), plan=chunk_plan)
def test_fbank_chunk_invariance_random_audio(n: int, seed: int, plan: list[int]) -> None:
    x = _noise(n, seed)
    fb = StreamingFbank()
    outs = _stream(fb.push, _chunks(x, plan))
    assert all(o.shape[1:] == (N_MELS,) and o.dtype == torch.float32 for o in outs)
    frames = torch.cat(outs) if outs else torch.zeros(0, N_MELS)
    assert fb.frames_emitted == frames.shape[0] == num_frames(n)
    assert fb.samples_seen == n
    if n >= FRAME_SAMPLES:
        torch.testing.assert_close(frames, kaldi_fbank(x, remove_clip_dc=False), atol=FRAME_ATOL, rtol=FRAME_RTOL)
    assert fb.flush().shape == (0, N_MELS)


@FAST
@given(plan=st.lists(chunk_size, min_size=1, max_size=12), start=st.integers(0, 100_000))
def test_fbank_chunk_invariance_sample_wav(plan: list[int], start: int) -> None:
    """Random chunkings of sample.wav from a random start (at least 3.7 s of it each time)."""
    x = SAMPLE_AUDIO[start:]
    offline = kaldi_fbank(x, remove_clip_dc=False)
    fb = StreamingFbank()
    frames = torch.cat(_stream(fb.push, _chunks(x, plan, min_cycle=4000)))
    torch.testing.assert_close(frames, offline, atol=FRAME_ATOL, rtol=FRAME_RTOL)


def test_fbank_whole_sample_matches_official_features() -> None:
    """Streaming frames, normalised and padded, are the official sample_fbank (README tolerance)."""
    fb = StreamingFbank()
    frames = torch.cat(_stream(fb.push, _chunks(SAMPLE_AUDIO, [3000, 0, 1, 777])))
    official = torch.load(FIXTURES / "sample_fbank.pt", weights_only=True)
    normed = normalize(frames, "audioset")
    assert frames.shape[0] == 998
    diff = (normed - official[:998]).abs()
    assert float(diff.max()) < 5e-4 and float(diff.median()) < 1e-5


def test_fbank_one_sample_at_a_time() -> None:
    x = _noise(2 * FRAME_SAMPLES + 3 * HOP_SAMPLES + 7, seed=3)
    fb = StreamingFbank()
    outs = [fb.push(x[i : i + 1]) for i in range(len(x))]
    counts = [o.shape[0] for o in outs]
    torch.testing.assert_close(torch.cat(outs), kaldi_fbank(x, remove_clip_dc=False), atol=FRAME_ATOL, rtol=FRAME_RTOL)
    # frame i appears exactly when sample HOP * i + FRAME - 1 arrives
    emitted_at = [i for i, c in enumerate(counts) if c]
    assert emitted_at == [HOP_SAMPLES * k + FRAME_SAMPLES - 1 for k in range(num_frames(len(x)))]
    assert set(counts) == {0, 1}


def test_fbank_int16_chunks_equal_float_chunks() -> None:
    rng = np.random.default_rng(0)
    pcm = rng.integers(-32768, 32768, size=5000, dtype=np.int64).astype(np.int16)
    plan = [123, 0, 1, 999, 400, 160]
    a, b, c = StreamingFbank(), StreamingFbank(), StreamingFbank()
    from_int = torch.cat(_stream(a.push, _chunks(pcm, plan)))
    from_torch_int = torch.cat(_stream(b.push, _chunks(torch.from_numpy(pcm), plan)))
    from_float = torch.cat(_stream(c.push, _chunks(pcm.astype(np.float32) / 32768.0, plan)))
    assert torch.equal(from_int, from_float) and torch.equal(from_torch_int, from_float)
    offline = kaldi_fbank(torch.from_numpy(pcm.astype(np.float32) / 32768.0), remove_clip_dc=False)
    torch.testing.assert_close(from_int, offline, atol=FRAME_ATOL, rtol=FRAME_RTOL)


def test_fbank_other_dtypes_stream() -> None:
    """int32, uint8 and float64 chunks go through to_float32's scaling."""
    rng = np.random.default_rng(1)
    i32 = rng.integers(-(2**31), 2**31, size=1200, dtype=np.int64).astype(np.int32)
    u8 = rng.integers(0, 256, size=1200, dtype=np.int64).astype(np.uint8)
    for pcm, as_float in [
        (i32, (i32.astype(np.float64) / 2**31).astype(np.float32)),
        (u8, ((u8.astype(np.float64) - 128) / 128).astype(np.float32)),
        (i32.astype(np.float64) / 2**31, (i32.astype(np.float64) / 2**31).astype(np.float32)),
    ]:
        fb = StreamingFbank()
        got = torch.cat(_stream(fb.push, _chunks(pcm, [500, 1, 0])))
        expected = kaldi_fbank(torch.from_numpy(as_float), remove_clip_dc=False)
        torch.testing.assert_close(got, expected, atol=FRAME_ATOL, rtol=FRAME_RTOL)


@FAST
@given(seed=st.integers(0, 2**16), plan=chunk_plan, cut=st.integers(0, 20))
def test_fbank_snapshot_restore_continues_identically(seed: int, plan: list[int], cut: int) -> None:
    x = _noise(8000, seed)
    chunks = _chunks(x, plan, min_cycle=300)
    cut = min(cut, len(chunks))
    a = StreamingFbank()
    for c in chunks[:cut]:
        a.push(c)
    snapshot = a.state_dict()
    buf = io.BytesIO()
    torch.save(snapshot, buf)
    buf.seek(0)
    b = StreamingFbank()
    b.push(_noise(1234, seed + 1))  # some unrelated history, overwritten by the restore
    b.load_state_dict(torch.load(buf, weights_only=True))
    assert (b.frames_emitted, b.samples_seen) == (a.frames_emitted, a.samples_seen)
    rest_a = _stream(a.push, chunks[cut:])
    rest_b = _stream(b.push, chunks[cut:])
    assert all(torch.equal(p, q) for p, q in zip(rest_a, rest_b))
    # the snapshot is a copy: continuing `a` did not change it
    assert snapshot["samples_seen"] == sum(len(c) for c in chunks[:cut])


def test_fbank_reset_equals_fresh() -> None:
    x = _noise(3000, seed=9)
    used = StreamingFbank()
    used.push(_noise(1777, seed=10))
    used.reset()
    fresh = StreamingFbank()
    assert used.state_dict()["samples_seen"] == 0 and used.buffered_samples == 0
    for c in _chunks(x, [333, 0, 1]):
        assert torch.equal(used.push(c), fresh.push(c))
    assert used.frames_emitted == fresh.frames_emitted == num_frames(3000)


def test_fbank_memory_bound_over_a_minute() -> None:
    chunk = SAMPLE_RATE  # 1 s
    fb = StreamingFbank()
    x = _noise(chunk, seed=4)
    peak = 0
    total_frames = 0
    for _ in range(60):
        total_frames += fb.push(x).shape[0]
        peak = max(peak, fb.buffered_samples)
        assert fb.buffered_samples == fb.samples_seen - HOP_SAMPLES * fb.frames_emitted
    assert peak < FRAME_SAMPLES < FRAME_SAMPLES + chunk
    assert total_frames == num_frames(60 * chunk) and fb.samples_seen == 60 * chunk


def test_fbank_errors_leave_state_unchanged() -> None:
    fb = StreamingFbank()
    fb.push(_noise(700, seed=1))
    before = fb.state_dict()
    bad = _noise(500, seed=2)
    bad[33] = math.nan
    with pytest.raises(AudioInputError, match=r"1 NaN/Inf samples \(first at index 33\)"):
        fb.push(bad)
    with pytest.raises(AudioInputError, match=r"shape \(2, 100\); streamed chunks must be 1-D"):
        fb.push(torch.zeros(2, 100))
    with pytest.raises(AudioInputError, match=r"shape \(\); streamed chunks must be 1-D"):
        fb.push(torch.tensor(0.5))
    with pytest.raises(AudioInputError, match="dtype int64"):
        fb.push(np.zeros(10, dtype=np.int64))
    with pytest.raises(AudioInputError, match="numpy array or a torch tensor"):
        fb.push([0.0] * 10)
    after = fb.state_dict()
    assert torch.equal(before["buffer"], after["buffer"])
    assert (before["samples_seen"], before["frames_emitted"]) == (after["samples_seen"], after["frames_emitted"])


def test_fbank_malformed_state_dicts() -> None:
    good = StreamingFbank()
    good.push(_noise(1000, seed=0))
    state = good.state_dict()
    fb = StreamingFbank()
    cases = [
        ({k: v for k, v in state.items() if k != "buffer"}, "no 'buffer' entry"),
        ({**state, "buffer": state["buffer"].double()}, "1-D float32"),
        ({**state, "buffer": torch.zeros(FRAME_SAMPLES)}, "at most 399"),
        ({**state, "samples_seen": 999}, "inconsistent"),
        ({**state, "frames_emitted": -1}, ">= 0"),
        ({**state, "frames_emitted": "4"}, "must be"),
        ("not a dict", "must be a dict"),
    ]
    for bad, message in cases:
        with pytest.raises(StreamStateError, match=message):
            fb.load_state_dict(bad)  # type: ignore[arg-type]
        assert fb.samples_seen == 0  # nothing half-loaded
    fb.load_state_dict(state)
    assert fb.samples_seen == 1000


# ---------------------------------------------------------------------------------------------
# StreamingResampler
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("orig", "new"), [(8000, 16000), (44100, 16000), (48000, 16000), (16000, 22050)])
def test_kernel_is_torchaudios(orig: int, new: int) -> None:
    from torchaudio.functional.functional import _get_sinc_resample_kernel

    g = math.gcd(orig, new)
    ours, width = sinc_resample_kernel(orig // g, new // g)
    theirs, their_width = _get_sinc_resample_kernel(orig, new, g, dtype=torch.float32)
    assert width == their_width and torch.equal(ours, theirs)


def _resample_stream(
    rate: int, x: torch.Tensor, plan: list[int]
) -> tuple[torch.Tensor, torch.Tensor, StreamingResampler]:
    """(outputs of all pushes, output of flush, the resampler) for ``x`` cut by ``plan``."""
    rs = StreamingResampler(rate, SAMPLE_RATE)
    pushed = _stream(rs.push, _chunks(x, plan, min_cycle=500))
    body = torch.cat(pushed) if pushed else torch.zeros(0)
    return body, rs.flush(), rs


@FAST
@given(
    rate=st.sampled_from([8000, 44100, 48000]),
    n=st.integers(0, 9000),
    seed=st.integers(0, 2**16),
    plan=chunk_plan,
)
def test_resampler_chunk_invariance_and_torchaudio(rate: int, n: int, seed: int, plan: list[int]) -> None:
    x = _noise(n, seed)
    body, tail, rs = _resample_stream(rate, x, plan)
    whole_body, whole_tail, _ = _resample_stream(rate, x, [max(n, 1)])
    torch.testing.assert_close(torch.cat([body, tail]), torch.cat([whole_body, whole_tail]), atol=1e-7, rtol=0)
    # torchaudio on the whole signal, zero-padded at both ends (it cannot take an empty signal)
    expected = taf.resample(x, rate, SAMPLE_RATE) if n else torch.zeros(0)
    out = torch.cat([body, tail])
    assert out.shape == expected.shape == (math.ceil(n * SAMPLE_RATE / rate),)
    torch.testing.assert_close(out, expected, atol=SAMPLE_ATOL, rtol=0)
    # before flush, everything emitted is final; only the last filter width or so is held back
    torch.testing.assert_close(body, expected[: body.numel()], atol=SAMPLE_ATOL, rtol=0)
    held = expected.numel() - body.numel()
    assert held <= math.ceil(rs.latency_input_samples * SAMPLE_RATE / rate) + 1
    assert rs.samples_seen == n and rs.samples_emitted == expected.numel()


def test_resampler_tone_quality_and_latency() -> None:
    """A 1 kHz tone at 44.1 kHz comes out as the same tone at 16 kHz away from the ends."""
    rate = 44100
    t = torch.arange(rate, dtype=torch.float64) / rate
    x = (0.5 * torch.sin(2 * math.pi * 1000 * t)).float()
    body, tail, rs = _resample_stream(rate, x, [441, 1000, 1])
    out = torch.cat([body, tail]).double()
    t16 = torch.arange(out.numel(), dtype=torch.float64) / SAMPLE_RATE
    ref = 0.5 * torch.sin(2 * math.pi * 1000 * t16)
    edge = math.ceil(rs.width * SAMPLE_RATE / rate) + 2
    torch.testing.assert_close(out[edge:-edge], ref[edge:-edge], atol=5e-3, rtol=0)
    assert rs.width == 17 and rs.latency_input_samples == 17 + 441
    assert rs.latency_seconds == pytest.approx(458 / 44100)


def test_resampler_passthrough_and_int16() -> None:
    rs = StreamingResampler(SAMPLE_RATE, SAMPLE_RATE)
    pcm = np.array([0, 16384, -32768, 32767], dtype=np.int16)
    assert rs.push(pcm).tolist() == [v / 32768 for v in pcm.tolist()]
    assert rs.latency_input_samples == 0 and rs.flush().numel() == 0
    a, b = StreamingResampler(8000), StreamingResampler(8000)
    rng = np.random.default_rng(5)
    pcm = rng.integers(-32768, 32768, size=3000, dtype=np.int64).astype(np.int16)
    ia = torch.cat(_stream(a.push, _chunks(pcm, [17, 0, 401])) + [a.flush()])
    fb = torch.cat(_stream(b.push, _chunks(pcm.astype(np.float32) / 32768, [17, 0, 401])) + [b.flush()])
    assert torch.equal(ia, fb)


@FAST
@given(rate=st.sampled_from([8000, 44100, 48000]), seed=st.integers(0, 2**16), plan=chunk_plan, cut=st.integers(0, 15))
def test_resampler_snapshot_restore(rate: int, seed: int, plan: list[int], cut: int) -> None:
    x = _noise(6000, seed)
    chunks = _chunks(x, plan, min_cycle=500)
    cut = min(cut, len(chunks))
    a = StreamingResampler(rate)
    for c in chunks[:cut]:
        a.push(c)
    b = StreamingResampler(rate)
    b.push(_noise(999, seed + 1))
    b.load_state_dict(a.state_dict())
    rest_a = _stream(a.push, chunks[cut:]) + [a.flush()]
    rest_b = _stream(b.push, chunks[cut:]) + [b.flush()]
    assert all(torch.equal(p, q) for p, q in zip(rest_a, rest_b))


def test_resampler_reset_memory_and_errors() -> None:
    rs = StreamingResampler(48000)
    fresh = StreamingResampler(48000)
    rs.push(_noise(5000, seed=1))
    rs.flush()
    with pytest.raises(StreamStateError, match="flushed"):
        rs.push(np.zeros(3, dtype=np.float32))
    rs.reset()
    x = _noise(48000 * 2, seed=2)
    peak = 0
    for c in _chunks(x, [4800]):
        assert torch.equal(rs.push(c), fresh.push(c))
        peak = max(peak, rs.buffered_samples)
    assert peak < 2 * rs.width + 3  # < kernel length (o = 3 for 48 kHz -> 16 kHz)
    before = rs.state_dict()
    bad = _noise(10, seed=3)
    bad[4] = math.inf
    with pytest.raises(AudioInputError, match=r"first at index 4"):
        rs.push(bad)
    with pytest.raises(AudioInputError, match="1-D"):
        rs.push(np.zeros((2, 10), dtype=np.float32))
    assert torch.equal(rs.state_dict()["buffer"], before["buffer"]) and rs.samples_seen == before["samples_seen"]
    for bad_rate in (0, 999, 400_000, 44100.5, True):
        with pytest.raises(AudioInputError, match="orig_rate"):
            StreamingResampler(bad_rate)  # type: ignore[arg-type]
    with pytest.raises(AudioInputError, match="target_rate"):
        StreamingResampler(44100, -1)
    with pytest.raises(StreamStateError, match="44100 -> 16000"):
        StreamingResampler(48000).load_state_dict(StreamingResampler(44100).state_dict())
    with pytest.raises(StreamStateError, match="inconsistent"):
        StreamingResampler(48000).load_state_dict({**before, "samples_seen": before["samples_seen"] + 1})


# ---------------------------------------------------------------------------------------------
# StreamingFrontEnd
# ---------------------------------------------------------------------------------------------


def _offline_resample(rate: int, x: torch.Tensor) -> torch.Tensor:
    """The streaming resampler applied to the whole signal at once (one push, then flush)."""
    if rate == SAMPLE_RATE:
        return x
    rs = StreamingResampler(rate)
    return torch.cat([rs.push(x), rs.flush()])


# Frames of audio resampled by torchaudio (float32 accumulation) instead of the streaming
# resampler (float64 accumulation): the ~1e-7 sample differences are amplified in the quietest
# mel bins (the lowest bands, ~30 dB down after pre-emphasis), so the log-mel tolerance is looser.
# Over 479 seeds at 44.1 and 8 kHz (one push, 2026-11-27) the largest single difference was
# 2.0e-4 and the largest 99.9th percentile 7.4e-5; hypothesis later found 2.5e-4 (seed 3709,
# 44.1 kHz: frame 3, mel bin 0). A bound on the max at the tail of that distribution failed at
# random, so the tail's few elements get a looser bound than the bulk.
TORCHAUDIO_PATH_ATOL = 1e-3  # any element (worst seen 2.5e-4)
TORCHAUDIO_PATH_Q999 = 2e-4  # 99.9th percentile of the elements (worst seen 7.4e-5)


@FAST
@given(rate=st.sampled_from([16000, 44100, 8000]), seed=st.integers(0, 2**16), plan=chunk_plan)
def test_front_end_matches_offline_pipeline(rate: int, seed: int, plan: list[int]) -> None:
    x = _noise(rate // 2, seed)  # 0.5 s
    fe = StreamingFrontEnd(input_rate=rate, norm="audioset")
    frames = torch.cat(_stream(fe.push, _chunks(x, plan, min_cycle=500)) + [fe.flush()])
    expected = normalize(kaldi_fbank(_offline_resample(rate, x), remove_clip_dc=False), NORM_PRESETS["audioset"])
    assert frames.shape == expected.shape == (num_frames(SAMPLE_RATE // 2), N_MELS)
    torch.testing.assert_close(frames, expected, atol=FRAME_ATOL, rtol=FRAME_RTOL)
    assert fe.frames_emitted == expected.shape[0] and fe.samples_seen == x.numel()
    x16 = taf.resample(x, rate, SAMPLE_RATE) if rate != SAMPLE_RATE else x
    via_torchaudio = normalize(kaldi_fbank(x16, remove_clip_dc=False), NORM_PRESETS["audioset"])
    diff = (frames - via_torchaudio).abs()
    assert float(diff.max()) < TORCHAUDIO_PATH_ATOL and float(diff.median()) < 1e-6
    assert float(torch.quantile(diff.flatten(), 0.999)) < TORCHAUDIO_PATH_Q999


def test_front_end_norm_options_snapshot_reset() -> None:
    x = _noise(30_000, seed=8)
    raw = StreamingFrontEnd(44100, norm=None)
    custom = StreamingFrontEnd(44100, norm=NormStats(1.0, 0.5))
    a = torch.cat(_stream(raw.push, _chunks(x, [1000])) + [raw.flush()])
    b = torch.cat(_stream(custom.push, _chunks(x, [1000])) + [custom.flush()])
    torch.testing.assert_close(b, a - 1.0, atol=1e-6, rtol=0)
    offline = kaldi_fbank(_offline_resample(44100, x), remove_clip_dc=False)
    torch.testing.assert_close(a, offline, atol=FRAME_ATOL, rtol=FRAME_RTOL)
    # snapshot mid-stream into a fresh front end, through torch.save
    chunks = _chunks(x, [2345, 0, 1])
    p, q = StreamingFrontEnd(44100), StreamingFrontEnd(44100)
    for c in chunks[:5]:
        p.push(c)
    buf = io.BytesIO()
    torch.save(p.state_dict(), buf)
    buf.seek(0)
    q.load_state_dict(torch.load(buf, weights_only=True))
    rest_p = _stream(p.push, chunks[5:]) + [p.flush()]
    rest_q = _stream(q.push, chunks[5:]) + [q.flush()]
    assert all(torch.equal(u, v) for u, v in zip(rest_p, rest_q))
    # reset == fresh, and push after flush needs reset
    with pytest.raises(StreamStateError, match="reset"):
        p.push(x[:10])
    p.reset()
    fresh = StreamingFrontEnd(44100)
    for c in chunks[:4]:
        assert torch.equal(p.push(c), fresh.push(c))
    with pytest.raises(StreamStateError, match="input_rate 44100"):
        StreamingFrontEnd(48000).load_state_dict(fresh.state_dict())
    with pytest.raises(StreamStateError, match="'resampler'"):
        StreamingFrontEnd(44100).load_state_dict({k: v for k, v in fresh.state_dict().items() if k != "resampler"})
    assert fresh.latency_input_samples == 17 + 441
    with pytest.raises(AudioInputError, match="input_rate"):
        StreamingFrontEnd(input_rate=100)
    with pytest.raises(ConfigError, match="unknown normalisation"):
        StreamingFrontEnd(norm="librispeech")
