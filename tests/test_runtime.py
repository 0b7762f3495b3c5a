"""Streaming contract properties P1, P2, P3, P5 (STREAMING.md) on small random models."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from streaming_aum.audio_constants import SAMPLE_RATE
from streaming_aum.config import streaming_config
from streaming_aum.errors import AudioInputError, ConfigError
from streaming_aum.features import waveform_to_features
from streaming_aum.loading import load_model
from streaming_aum.model import AudioMamba
from streaming_aum.offline import classify_waveform
from streaming_aum.runtime import RecomputeRuntime, StreamingRuntime
from streaming_aum.streaming_features import StreamStateError

MIXERS = ["none", "v1", "v2"]


def random_model(mixer: str, seed: int = 0, **kw) -> AudioMamba:
    torch.manual_seed(seed)
    model = AudioMamba(streaming_config(embed_dim=32, depth=2, mixer=mixer, num_classes=4, **kw))
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.05)
    return model.eval()


MODELS = {m: random_model(m) for m in MIXERS}


def audio(seconds: float, seed: int = 1) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    t = torch.arange(int(seconds * SAMPLE_RATE)) / SAMPLE_RATE
    return 0.1 * torch.randn(t.numel(), generator=g) + 0.3 * torch.sin(2 * torch.pi * 440 * t)


def stream(rt, x: torch.Tensor, cuts: list[int]) -> list:
    out, prev = [], 0
    for c in sorted(cuts) + [x.numel()]:
        out += rt.push(x[prev:c])
        prev = c
    return out + rt.flush()


def offline_prefix_logits(model, x, t_end):
    n = int(round(t_end * SAMPLE_RATE))
    feats = waveform_to_features(x[:n], target_frames=None, remove_clip_dc=False)
    with torch.no_grad():
        return model(feats.unsqueeze(0))[0]


def stacked(results):
    return torch.stack([r.logits for r in results])


@pytest.mark.parametrize("mixer", MIXERS)
@settings(max_examples=8, deadline=None)
@given(cuts=st.lists(st.integers(0, 12000), max_size=12), window=st.sampled_from([None, 2, 5]))
def test_p1_chunk_invariance(mixer, cuts, window):
    x = audio(0.75)
    whole = stream(StreamingRuntime(MODELS[mixer], window_columns=window), x, [])
    chunked = stream(StreamingRuntime(MODELS[mixer], window_columns=window), x, cuts)
    assert len(whole) == len(chunked) == 4
    torch.testing.assert_close(stacked(chunked), stacked(whole), atol=1e-5, rtol=0)
    assert [r.t_end for r in chunked] == [r.t_end for r in whole]


def test_p1_one_sample_and_empty_chunks_int16():
    x = audio(0.5)
    x16 = (x * 32767).round().to(torch.int16)
    whole = stream(StreamingRuntime(MODELS["v2"], window_columns=2), x16.float() / 32768, [])
    rt = StreamingRuntime(MODELS["v2"], window_columns=2)
    results = []
    for i in range(x16.numel()):
        results += rt.push(x16[i:i + 1].numpy())
        if i % 1000 == 0:
            results += rt.push(x16[:0])
    results += rt.flush()
    assert len(results) == len(whole) == 3
    torch.testing.assert_close(stacked(results), stacked(whole), atol=1e-5, rtol=0)


@pytest.mark.parametrize("mixer", MIXERS)
def test_p2_unbounded_window_equals_offline_prefix(mixer):
    x = audio(1.5)
    results = stream(StreamingRuntime(MODELS[mixer], window_columns=None), x, [5000, 5001, 17000])
    assert len(results) == 9  # 1 + (24000 - 2800) // 2560
    for r in results:
        torch.testing.assert_close(r.logits, offline_prefix_logits(MODELS[mixer], x, r.t_end),
                                   atol=1e-4, rtol=0)
    # W at least the columns seen is the same as unbounded
    big = stream(StreamingRuntime(MODELS[mixer], window_columns=9), x, [])
    torch.testing.assert_close(stacked(big), stacked(results), atol=1e-5, rtol=0)


@pytest.mark.parametrize("window", [1, 2, 3, 7])
def test_p3_exact_carry_forward_only(window):
    model = MODELS["none"]
    x = audio(2.0)
    rt = StreamingRuntime(model, window_columns=window, pool="stream", column_scores=True)
    results = stream(rt, x, [3000])
    assert len(results) == 12
    for r in results:
        torch.testing.assert_close(r.logits, offline_prefix_logits(model, x, r.t_end),
                                   atol=1e-4, rtol=0)
    # per-column scores equal the offline per-column scores of the whole clip
    feats = waveform_to_features(x, target_frames=None, remove_clip_dc=False)
    with torch.no_grad():
        tokens, _ = model.forward_tokens(feats.unsqueeze(0))
        offline_cols = model.forward_head(tokens[0].reshape(-1, 8, 32).mean(1))
    streamed_cols = torch.cat([r.column_logits for r in results])
    torch.testing.assert_close(streamed_cols, offline_cols, atol=1e-4, rtol=0)


def test_finite_window_differs_for_bidirectional():
    """Sanity: the window approximation is real for v1 (else P3-style tests prove nothing)."""
    x = audio(2.0)
    results = stream(StreamingRuntime(MODELS["v1"], window_columns=2, pool="stream"), x, [])
    gap = max((r.logits - offline_prefix_logits(MODELS["v1"], x, r.t_end)).abs().max().item()
              for r in results)
    assert gap > 1e-5


@pytest.mark.parametrize("mixer", ["v1", "v2"])
def test_p5_reset_and_snapshot_resume(mixer):
    x = audio(1.2)
    fresh = stream(StreamingRuntime(MODELS[mixer], window_columns=3), x, [])
    rt = StreamingRuntime(MODELS[mixer], window_columns=3)
    stream(rt, audio(0.7, seed=9), [1234])
    rt.reset()
    torch.testing.assert_close(stacked(stream(rt, x, [])), stacked(fresh), atol=0, rtol=0)
    for cut in (1, 3000, 7777, 12000):
        rt = StreamingRuntime(MODELS[mixer], window_columns=3)
        first = rt.push(x[:cut])
        snap = rt.state_dict()
        rt.push(audio(0.3, seed=5))  # diverge, then restore into a new runtime
        resumed = StreamingRuntime(MODELS[mixer], window_columns=3)
        resumed.load_state_dict(snap)
        rest = resumed.push(x[cut:]) + resumed.flush()
        torch.testing.assert_close(stacked(first + rest), stacked(fresh), atol=0, rtol=0)
        assert [r.index for r in first + rest] == list(range(len(fresh)))


def test_functional_infer_matches_push():
    x = audio(1.0)
    rt = StreamingRuntime(MODELS["v1"], window_columns=2)
    state, results = None, []
    for i in range(0, x.numel(), 4000):
        out, state = rt.infer(x[i:i + 4000], state)
        results += out
    fresh = StreamingRuntime(MODELS["v1"], window_columns=2)
    expected = fresh.push(x)
    torch.testing.assert_close(stacked(results), stacked(expected), atol=1e-6, rtol=0)


def test_runtime_errors():
    with pytest.raises(ConfigError, match="streaming-layout model"):
        StreamingRuntime(AudioMamba(streaming_config(embed_dim=16, depth=1, num_classes=2,
                                                     class_token="middle")))
    with pytest.raises(ConfigError, match="window_columns"):
        StreamingRuntime(MODELS["v1"], window_columns=0)
    rt = StreamingRuntime(MODELS["v1"], window_columns=2)
    rt.push(audio(0.3))
    before = rt.state_dict()
    with pytest.raises(AudioInputError):
        rt.push(torch.tensor([0.0, float("nan")]))
    with pytest.raises(AudioInputError):
        rt.push(torch.zeros(2, 100))
    after = rt.state_dict()
    torch.testing.assert_close(after["window"], before["window"])
    with pytest.raises(StreamStateError, match="window_columns"):
        StreamingRuntime(MODELS["v1"], window_columns=5).load_state_dict(before)
    with pytest.raises(StreamStateError, match="malformed"):
        rt.load_state_dict({"kind": "StreamingRuntime"})


def test_recompute_runtime_official_model(fixtures_dir):
    """Official checkpoints stream by windowed recomputation; every hop is the offline model on
    the window's audio, and with an unbounded window the last result is the whole-file one."""
    import soundfile as sf

    model = load_model(fixtures_dir / "v1_d96_L4.pt")  # grid of 256 frames = 2.56 s
    wav, _ = sf.read(fixtures_dir / "sample.wav", dtype="float32")
    x = torch.from_numpy(wav[:48000])
    rt = RecomputeRuntime(model, window_s=2.56)
    results = stream(rt, x, [100, 20000])
    for r in results[::4]:
        segment = x[int(round(r.t_start * SAMPLE_RATE)):int(round(r.t_end * SAMPLE_RATE))]
        torch.testing.assert_close(r.logits, classify_waveform(model, segment).logits,
                                   atol=1e-5, rtol=0)
    full = stream(RecomputeRuntime(model, window_s=None), x, [777])
    torch.testing.assert_close(full[-1].logits, classify_waveform(model, x).logits, atol=1e-5,
                               rtol=0)
    assert full[-1].t_end == pytest.approx(3.0)
    chunked = stream(RecomputeRuntime(model, window_s=2.56), x, list(range(0, 48000, 999)))
    torch.testing.assert_close(stacked(chunked), stacked(results), atol=1e-6, rtol=0)


def test_recompute_runtime_other_rate_is_chunk_invariant_and_resampled(fixtures_dir):
    """8 kHz input: the runtime's own resampler gives what resampling the whole signal first
    (then streaming at 16 kHz) gives, whatever the chunking; snapshots carry the resampler."""
    from streaming_aum.streaming_features import StreamingResampler

    model = load_model(fixtures_dir / "v2_d96_L4.pt")
    x8 = audio(1.5)[::2].contiguous()  # 12000 samples read as 8 kHz
    rs = StreamingResampler(8000)
    x16 = torch.cat([rs.push(x8), rs.flush()])
    expected = stream(RecomputeRuntime(model, window_s=1.0), x16, [])
    rt = RecomputeRuntime(model, window_s=1.0, input_rate=8000)
    first = rt.push(x8[:5000])
    resumed = RecomputeRuntime(model, window_s=1.0, input_rate=8000)
    resumed.load_state_dict(rt.state_dict())
    got = first + stream(resumed, x8[5000:], [3333])
    assert len(got) == len(expected)
    torch.testing.assert_close(stacked(got), stacked(expected), atol=1e-6, rtol=0)
    with pytest.raises(StreamStateError, match="input rate"):
        RecomputeRuntime(model, window_s=1.0).load_state_dict(rt.state_dict())
    with pytest.raises(AudioInputError):
        RecomputeRuntime(model, input_rate=-5)


@pytest.mark.parametrize("mixer", MIXERS)
@pytest.mark.parametrize("pool,hop", [("window", 1), ("stream", 1), ("window", 2)])
def test_hop_plan_is_bit_identical_to_window_step(mixer, pool, hop, monkeypatch):
    """The preallocated hop (hop_plan.HopPlan, taken for finite windows on the float32 CPU
    inference path) against the same runtime forced onto ``window_step``: identical logits,
    per-column logits and carried states at every hop, through the filling window, a
    parameter edited in place mid-stream (the plan sees it), a snapshot restore, and a
    restore of an older snapshot (layer 0's rows from the previous hop then do not apply and
    must not be reused); a forward hook on a mixer sends hops back through the modules. Once
    the window slides, layer 0 reuses the previous hop's rows (counted)."""
    from streaming_aum import hop_plan

    model = random_model(mixer, seed=3)
    planned = StreamingRuntime(model, window_columns=3, hop_columns=hop, pool=pool,
                               column_scores=True)
    plain = StreamingRuntime(model, window_columns=3, hop_columns=hop, pool=pool,
                             column_scores=True)
    plain._plan_for = lambda *_: None
    runs = []
    real_run = hop_plan.HopPlan.run
    monkeypatch.setattr(hop_plan.HopPlan, "run", lambda *a: runs.append(1) or real_run(*a))
    reused = []
    real_reuse = hop_plan.layer0_reuse
    monkeypatch.setattr(hop_plan, "layer0_reuse",
                        lambda *a: reused.append(real_reuse(*a)) or reused[-1])
    x = audio(3.0, seed=5)

    def compare(chunk):
        ra, rb = planned.push(chunk), plain.push(chunk)
        assert len(ra) == len(rb)
        for a, b in zip(ra, rb):
            assert torch.equal(a.logits, b.logits) and torch.equal(a.column_logits,
                                                                   b.column_logits)
        assert torch.equal(planned._conv, plain._conv) and torch.equal(planned._ssm, plain._ssm)
        return len(ra)

    hops = compare(x[:26000])
    assert hops >= 5 and len(runs) == hops  # every hop took the plan, filling window included
    assert sum(reused) >= hops - 4  # all but the filling hops and the first sliding one
    early = planned.state_dict(), plain.state_dict()
    with torch.no_grad():
        model.layers[1].mixer.A_log.add_(0.2)  # in place: version counter, same storage
        model.layers[0].norm.weight.mul_(1.3)
    compare(x[26000:31000])
    with torch.no_grad():  # replaced, not edited: new Parameter objects
        model.layers[0].mixer.out_proj.weight = torch.nn.Parameter(
            0.9 * model.layers[0].mixer.out_proj.weight)
        model.norm_f.weight = torch.nn.Parameter(model.norm_f.weight * 1.1)
        model.layers[1].norm.weight.data = model.layers[1].norm.weight.data * 0.8
    compare(x[31000:36000])
    snap = planned.state_dict()
    planned.reset()
    planned.load_state_dict(snap)
    compare(x[36000:42000])
    reused.clear()
    planned.load_state_dict(early[0])  # back to an older point of the stream
    plain.load_state_dict(early[1])
    assert compare(x[26000:42000]) > 1 and reused[0] is False and sum(reused) > 0
    runs.clear()
    handle = model.layers[0].mixer.register_forward_hook(lambda *_: None)
    try:
        assert compare(x[42000:]) > 0 and not runs
    finally:
        handle.remove()


def test_column_embedding_is_the_streaming_embedding():
    """hop_plan.ColumnEmbedding (the runtime's per-column embedding with bound operands) gives
    the bits of AudioMamba._embed_streaming_layout, also after in-place parameter edits; a
    replaced parameter or a hook on the patch embedding makes it unusable, and the runtime
    then builds a new one or takes the general path."""
    from streaming_aum.hop_plan import ColumnEmbedding

    model = random_model("v2", seed=4)
    emb = ColumnEmbedding(model)
    g = torch.Generator().manual_seed(0)
    with torch.inference_mode():
        for _ in range(3):
            frames = torch.randn(16, 128, generator=g)
            assert emb.usable(frames)
            assert torch.equal(emb(frames), model._embed_streaming_layout(frames[None]))
        with torch.no_grad():
            model.patch_embed.proj.weight.mul_(1.5)
            model.pos_embed.pos_embed.add_(0.25)
        frames = torch.randn(16, 128, generator=g)
        assert emb.usable(frames)
        assert torch.equal(emb(frames), model._embed_streaming_layout(frames[None]))
        handle = model.patch_embed.register_forward_hook(lambda *_: None)
        assert not emb.usable(frames)
        handle.remove()
        assert not emb.usable(frames.double())
        model.patch_embed.proj.bias = torch.nn.Parameter(model.patch_embed.proj.bias + 1.0)
        assert not emb.usable(frames)
    rt = StreamingRuntime(model, window_columns=3)
    rt.push(audio(0.5))
    first = rt._embedding
    model.patch_embed.proj.weight = torch.nn.Parameter(model.patch_embed.proj.weight * 0.5)
    rt.push(audio(0.5, seed=2))
    with torch.inference_mode():
        assert rt._embedding is not first and rt._embedding.usable(torch.zeros(16, 128))
