"""AudioMamba against the official fixtures and against the explicit float64 reference."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from streaming_aum.config import AuMConfig
from streaming_aum.loading import load_model
from streaming_aum.model import AudioMamba
from streaming_aum.ops import scan_backend

import explicit_reference

BACKENDS = ["reference", "fused"]


@pytest.fixture(scope="module")
def inputs(fixtures_dir):
    return torch.load(fixtures_dir / "inputs.pt", weights_only=True)


@pytest.mark.parametrize("kind", ["v1", "v2"])
@pytest.mark.parametrize("backend", BACKENDS)
def test_official_logits_float32(fixtures_dir, inputs, kind, backend):
    model = load_model(fixtures_dir / f"{kind}_d96_L4.pt")
    expected = torch.load(fixtures_dir / f"logits_{kind}.pt", weights_only=True)
    with scan_backend(backend), torch.no_grad():
        logits = model(inputs["fbank"])
    assert (logits - expected).abs().max().item() < 1e-4
    per_clip = torch.cat([model(inputs["fbank"][i:i + 1]) for i in range(3)]).detach()
    assert (per_clip - expected).abs().max().item() < 1e-4


@pytest.mark.parametrize("kind", ["v1", "v2"])
def test_official_logits_float64(fixtures_dir, inputs, kind):
    model = load_model(fixtures_dir / f"{kind}_d96_L4.pt").double()
    expected = torch.load(fixtures_dir / f"logits_{kind}_f64.pt", weights_only=True)
    with torch.no_grad():
        logits = model(inputs["fbank"].double())
    assert (logits - expected).abs().max().item() < 1e-12


@pytest.mark.parametrize("kind", ["v1", "v2"])
def test_official_intermediates(fixtures_dir, inputs, kind):
    model = load_model(fixtures_dir / f"{kind}_d96_L4.pt")
    inter = torch.load(fixtures_dir / f"intermediates_{kind}.pt", weights_only=True)
    outs = []
    hooks = [blk.mixer.register_forward_hook(lambda m, i, o: outs.append(o[0]))
             for blk in model.layers]
    with torch.no_grad():
        tokens, readout = model.embed_tokens(inputs["fbank"][:1])
        final, _ = model.run_layers(tokens)
        feats = model.forward_features(inputs["fbank"])
    for h in hooks:
        h.remove()
    assert readout == 64
    torch.testing.assert_close(tokens, inter["tokens_in"], atol=1e-5, rtol=0)
    torch.testing.assert_close(torch.stack(outs[:4]), inter["mixer_out"], atol=1e-5, rtol=0)
    torch.testing.assert_close(feats, inter["cls_feature"], atol=1e-5, rtol=0)


def test_explicit_reference_reproduces_official_fixture(fixtures_dir, inputs):
    """The test's own float64 reference is validated on the official v2 logits first."""
    sd = torch.load(fixtures_dir / "v2_d96_L4.pt", weights_only=True)
    expected = torch.load(fixtures_dir / "logits_v2_f64.pt", weights_only=True)
    logits = explicit_reference.forward(sd, inputs["fbank"][2].double().numpy(), kind="v2", depth=4)
    np.testing.assert_allclose(logits, expected[2].numpy(), atol=1e-10)


CONFIGS = [
    dict(mixer="none", class_token="middle"),
    dict(mixer="v1", class_token="head"),
    dict(mixer="v2", class_token="tail"),
    dict(mixer="v1", class_token="double"),
    dict(mixer="v2", class_token="none"),
    dict(mixer="v1", class_token="none", token_order="time_major", pos_embed="freq_rows"),
    dict(mixer="none", class_token="middle", token_order="time_major"),
    dict(mixer="v2", class_token="middle", d_state=8, d_conv=3, expand=3, dt_rank=5),
]


def perturbed_model(cfg: AuMConfig, seed: int) -> AudioMamba:
    torch.manual_seed(seed)
    model = AudioMamba(cfg).eval()
    with torch.no_grad():
        for name, p in model.named_parameters():
            p.add_(torch.randn_like(p) * (0.1 if p.dim() == 1 or "A_" in name else 0.02))
    return model


@pytest.mark.parametrize("overrides", CONFIGS, ids=lambda c: "-".join(map(str, c.values())))
@pytest.mark.parametrize("backend", BACKENDS)
def test_configurations_match_explicit_reference(overrides, backend):
    cfg = AuMConfig(embed_dim=32, depth=2, num_classes=5, spectrogram_frames=64, **overrides)
    model = perturbed_model(cfg, seed=len(str(overrides)))
    fbank = torch.randn(2, 70, 128)  # 70 frames: 4 columns, 6 trailing frames dropped
    with scan_backend(backend), torch.no_grad():
        logits = model(fbank)
    for i in range(2):
        expected = explicit_reference.forward(
            model.state_dict(), fbank[i].double().numpy(), kind=cfg.mixer, depth=cfg.depth,
            token_order=cfg.token_order, class_token=cfg.class_token, pos_kind=cfg.pos_embed)
        np.testing.assert_allclose(logits[i].numpy(), expected, atol=1e-4)


def test_module_prefix_and_wrapped_checkpoints(fixtures_dir, inputs, tmp_path):
    sd = torch.load(fixtures_dir / "v1_d96_L4.pt", weights_only=True)
    expected = torch.load(fixtures_dir / "logits_v1.pt", weights_only=True)
    torch.save({f"module.{k}": v for k, v in sd.items()}, tmp_path / "ddp.pth")
    torch.save({"model": sd}, tmp_path / "wrapped.pth")
    for name in ("ddp.pth", "wrapped.pth"):
        with torch.no_grad():
            logits = load_model(tmp_path / name)(inputs["fbank"])
        assert (logits - expected).abs().max() < 1e-4


def test_resampled_grid_official_rule(fixtures_dir, inputs):
    """input_frames rebuilds the grid; a linear-in-time grid stays linear inside (bilinear)."""
    sd = torch.load(fixtures_dir / "v1_d96_L4.pt", weights_only=True)
    same = load_model(fixtures_dir / "v1_d96_L4.pt", input_frames=256)
    torch.testing.assert_close(same.pos_embed.pos_embed, sd["pos_embed.pos_embed"])
    from streaming_aum.model.embed import resample_pos_grid

    t = torch.arange(16, dtype=torch.float32)
    grid = (t[None, :, None] * 0.5 + torch.arange(8.0)[:, None, None]).expand(8, 16, 3)
    pos = torch.cat([torch.full((1, 1, 3), 7.0), grid.reshape(1, 128, 3)], dim=1)
    up = resample_pos_grid(pos, 1, (8, 16), (8, 32))
    assert up.shape == (1, 1 + 8 * 32, 3)
    assert torch.equal(up[0, 0], pos[0, 0])  # prefix kept
    rows = up[0, 1:].reshape(8, 32, 3)
    t_new = (torch.arange(32) + 0.5) / 2 - 0.5  # align_corners=False sample positions
    interior = slice(1, 31)
    torch.testing.assert_close(rows[3, interior, 0], 3 + 0.5 * t_new[interior], atol=1e-5, rtol=0)
    longer = load_model(fixtures_dir / "v1_d96_L4.pt", input_frames=512)
    assert longer.config.spectrogram_frames == 512
    with torch.no_grad():
        out = longer(torch.randn(1, 512, 128))
    assert torch.isfinite(out).all()


def test_num_classes_gives_fresh_head(fixtures_dir, inputs):
    base = load_model(fixtures_dir / "v2_d96_L4.pt")
    tuned = load_model(fixtures_dir / "v2_d96_L4.pt", num_classes=3)
    assert tuned.head.weight.shape == (3, 96)
    with torch.no_grad():
        torch.testing.assert_close(tuned.forward_features(inputs["fbank"]),
                                   base.forward_features(inputs["fbank"]))


@pytest.mark.parametrize("kind", ["none", "v1", "v2"])
def test_mixer_fused_inference_path_equals_generic_path(kind, monkeypatch):
    """``BiMambaMixer._forward_fused`` (kernel called directly, cached parameter layouts)
    against the generic path (``selective_scan`` dispatch) and a float64 copy: outputs and
    forward states with a carried state and a split, and the cache follows in-place edits."""
    import streaming_aum.model.mixer as mixer_mod
    from streaming_aum.model.mixer import BiMambaMixer, MixerState

    torch.manual_seed(0)
    mixer = BiMambaMixer(40, kind=kind).eval()
    with torch.no_grad():
        for p in mixer.parameters():  # away from the init's regular A and unit D
            p.add_(0.05 * torch.randn_like(p))
    a = torch.randn(2, 13, 40)
    state = MixerState(conv=torch.randn(2, 3, 80), ssm=torch.randn(2, 80, 16))

    def run(fused: bool, m: BiMambaMixer = mixer, x: torch.Tensor = a, st: MixerState = state):
        monkeypatch.setattr(mixer_mod, "fused_inference_path",
                            mixer_mod.fused_inference_path if fused else (lambda _: False))
        with torch.no_grad():
            return m(x, st, split=5)

    real = mixer_mod.fused_inference_path
    with torch.no_grad():
        assert real(a) and not real(a.double())
    assert not real(a)  # gradients recorded: the generic path (autograd) runs
    out_f, st_f = run(True)
    monkeypatch.setattr(mixer_mod, "fused_inference_path", real)
    assert mixer._fused_cache is not None  # the fused path ran
    out_g, st_g = run(False)
    m64 = BiMambaMixer(40, kind=kind).double().eval()
    m64.load_state_dict(mixer.state_dict())
    st64 = MixerState(conv=state.conv.double(), ssm=state.ssm.double())
    out_d, st_d = run(False, m64, a.double(), st64)
    torch.testing.assert_close(out_f, out_g, atol=2e-6, rtol=0)
    torch.testing.assert_close(st_f.ssm, st_g.ssm, atol=2e-6, rtol=0)
    assert torch.equal(st_f.conv, st_g.conv)
    assert (out_f.double() - out_d).abs().max() < 1e-5
    assert (st_f.ssm.double() - st_d.ssm).abs().max() < 1e-5
    # an in-place parameter edit (an optimiser step, load_state_dict) refreshes the cache
    with torch.no_grad():
        mixer.A_log.add_(0.3)
        mixer.dt_proj.bias.sub_(0.2)
        mixer.conv1d.weight.mul_(1.5)
    out_f2, _ = run(True)
    out_g2, _ = run(False)
    assert (out_f2 - out_f).abs().max() > 1e-3
    torch.testing.assert_close(out_f2, out_g2, atol=2e-6, rtol=0)
    # ... and so does a replaced parameter (a new tensor, version counter back at 0)
    mixer.out_proj.weight = torch.nn.Parameter(2 * mixer.out_proj.weight.detach())
    out_f3, _ = run(True)
    out_g3, _ = run(False)
    torch.testing.assert_close(out_f3, 2 * out_f2, atol=4e-6, rtol=0)
    torch.testing.assert_close(out_f3, out_g3, atol=4e-6, rtol=0)


def test_patch_embed_unfolded_matmul_equals_the_convolution():
    """The CPU inference path's matmul form of the patch embedding against the Conv2d (and a
    float64 conv), trailing frames/bins that do not fill a patch included; it is the path taken
    under no_grad on float32 CPU input, the convolution otherwise."""
    from streaming_aum.model.embed import PatchEmbed

    torch.manual_seed(0)
    pe = PatchEmbed(16, 24)
    for shape in [(2, 16, 128), (1, 100, 128), (3, 1024, 130)]:
        x = torch.randn(*shape)
        conv = pe.proj(x.unsqueeze(1).transpose(2, 3))
        with torch.no_grad():
            fast = pe(x)
            conv64 = torch.nn.functional.conv2d(x.double().unsqueeze(1).transpose(2, 3),
                                                pe.proj.weight.double(), pe.proj.bias.double(),
                                                stride=16)
        assert fast.shape == conv.shape == (shape[0], 24, shape[2] // 16, shape[1] // 16)
        torch.testing.assert_close(fast, conv.detach(), atol=2e-6, rtol=1e-6)
        assert (fast.double() - conv64).abs().max() < 2e-6
        assert torch.equal(pe.forward_unfolded(x).detach(), fast)  # the no_grad path is this
    def boom(*_):
        raise AssertionError("matmul form used with gradients on")

    pe.forward_unfolded = boom  # with gradients (training) the convolution runs
    assert torch.equal(pe(x), conv)


@pytest.mark.parametrize("kind", ["none", "v1", "v2"])
def test_inference_path_embedding_and_residual_stream_equal_the_generic_path(kind, monkeypatch):
    """A streaming-layout model on the float32 inference path (tokens unfolded straight into
    time-major order; residual adds and RMSNorms as fused numba calls) against the generic
    modules (conv patch embedding, grid permutes, torch RMSNorm) and float64: tokens, final
    features and forward states with a carried state and a split. A forward hook on a norm
    or on the patch embedding sends the call through the modules, so the hook still fires."""
    import streaming_aum.model.audio_mamba as am
    from streaming_aum.model.mixer import MixerState

    cfg = AuMConfig(embed_dim=32, depth=3, num_classes=5, mixer=kind, token_order="time_major",
                    pos_embed="freq_rows", class_token="none")
    model = perturbed_model(cfg, seed=7)
    fbank = torch.randn(1, 50, 128)  # 3 columns, 2 trailing frames dropped
    states = [MixerState(conv=0.5 * torch.randn(1, 3, 64), ssm=0.5 * torch.randn(1, 64, 16))
              for _ in range(cfg.depth)]

    def run(fused: bool, m=model, x=fbank, st=states):
        monkeypatch.setattr(am, "fused_inference_path",
                            am.fused_inference_path if fused else (lambda _: False))
        with torch.no_grad():
            tokens, _ = m.embed_tokens(x)
            out, new = m.run_layers(tokens, st, split=8)
        return tokens, out, new

    real = am.fused_inference_path
    fused_calls = []
    norm_kernel, embed_fast = am.add_rmsnorm_fused, am.AudioMamba._embed_streaming_layout
    monkeypatch.setattr(am, "add_rmsnorm_fused",
                        lambda *a: fused_calls.append("norm") or norm_kernel(*a))
    monkeypatch.setattr(am.AudioMamba, "_embed_streaming_layout",
                        lambda *a: fused_calls.append("embed") or embed_fast(*a))
    tok_f, out_f, st_f = run(True)
    assert fused_calls == ["embed"] + ["norm"] * (cfg.depth + 1)  # the fused forms ran
    fused_calls.clear()
    tok_g, out_g, st_g = run(False)
    assert not fused_calls
    monkeypatch.setattr(am, "fused_inference_path", real)
    torch.testing.assert_close(tok_f, tok_g, atol=2e-6, rtol=1e-6)
    torch.testing.assert_close(out_f, out_g, atol=1e-5, rtol=1e-5)
    for a, b in zip(st_f, st_g):
        torch.testing.assert_close(a.ssm, b.ssm, atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(a.conv, b.conv, atol=1e-5, rtol=1e-5)
    m64 = perturbed_model(cfg, seed=7).double()
    st64 = [MixerState(conv=s.conv.double(), ssm=s.ssm.double()) for s in states]
    with torch.no_grad():
        tok64, _ = m64.embed_tokens(fbank.double())
        out64, _ = m64.run_layers(tok64, st64, split=8)
    assert (out_f.double() - out64).abs().max() < 1e-4
    assert (tok_f.double() - tok64).abs().max() < 2e-6
    # hooks: the modules are called, so the hooks see the same values
    seen = []
    handles = [model.norm_f.register_forward_hook(lambda m, i, o: seen.append(("norm_f", o))),
               model.patch_embed.register_forward_hook(lambda m, i, o: seen.append(("pe", o)))]
    try:
        tok_h, out_h, _ = run(True)
    finally:
        for h in handles:
            h.remove()
    assert [k for k, _ in seen] == ["pe", "norm_f"] and not fused_calls
    torch.testing.assert_close(out_h, out_g, atol=1e-5, rtol=1e-5)
    assert torch.equal(seen[1][1], out_h)


@pytest.mark.parametrize("kind", ["none", "v1", "v2"])
def test_mixer_serial_fused_path_is_bit_identical_to_the_general_fused_path(kind, monkeypatch):
    """``_forward_fused_serial`` (a hop-sized call: the kernels on numpy buffers, no wrappers)
    runs the same kernels on the same inputs as the general fused path: identical bits for
    outputs and states, with and without a carried state and a split; and a state of the
    wrong shape is refused before it reaches a kernel (which would not bounds-check it)."""
    import streaming_aum.model.mixer as mixer_mod
    from streaming_aum.model.mixer import BiMambaMixer, MixerState

    torch.manual_seed(1)
    mixer = BiMambaMixer(40, kind=kind).eval()
    with torch.no_grad():
        for p in mixer.parameters():
            p.add_(0.05 * torch.randn_like(p))
    a = torch.randn(2, 13, 40)
    state = MixerState(conv=torch.randn(2, 3, 80), ssm=torch.randn(2, 80, 16))
    real = mixer_mod._runs_serially
    assert real(1, 56, 192, kind == "v2")  # a default-model hop takes the serial path
    serial_calls = []
    serial = mixer_mod.BiMambaMixer._forward_fused_serial
    monkeypatch.setattr(mixer_mod.BiMambaMixer, "_forward_fused_serial",
                        lambda *args: serial_calls.append(1) or serial(*args))
    for st, split in ((state, 5), (None, None), (state, 0), (state, 13)):
        with torch.no_grad():
            monkeypatch.setattr(mixer_mod, "_runs_serially", lambda *_: True)
            out_s, st_s = mixer(a, st, split=split)
            monkeypatch.setattr(mixer_mod, "_runs_serially", lambda *_: False)
            out_g, st_g = mixer(a, st, split=split)
        assert torch.equal(out_s, out_g)
        assert torch.equal(st_s.ssm, st_g.ssm) and torch.equal(st_s.conv, st_g.conv)
    assert len(serial_calls) == 4
    monkeypatch.setattr(mixer_mod, "_runs_serially", lambda *_: True)
    bad = MixerState(conv=torch.randn(2, 2, 80), ssm=torch.randn(2, 80, 16))
    with torch.no_grad(), pytest.raises(ValueError, match="state shapes"):
        mixer(a, bad, split=5)
