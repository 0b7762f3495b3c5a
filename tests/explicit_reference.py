"""An independent float64 AuM written from the equations in aum-reference.md, with explicit
per-token loops (no code shared with the package). Slow; for small models only.

It is itself checked against the official fixtures (tests/test_model_parity.py), then used as
the reference for configurations the fixtures do not cover.
"""

from __future__ import annotations

import math

import numpy as np


def softplus(x: np.ndarray) -> np.ndarray:
    return np.where(x <= 20.0, np.log1p(np.exp(np.minimum(x, 20.0))), x)


def silu(x: np.ndarray) -> np.ndarray:
    return x / (1.0 + np.exp(-x))


def scan_loop(u, dt, A, B, C, D, h0=None, reverse=False):
    """u, dt: (L, E); A: (E, S); B, C: (L, S); D: (E,). Returns y (L, E), last h (E, S)."""
    L, E = u.shape
    h = np.zeros((E, A.shape[1])) if h0 is None else np.array(h0, dtype=np.float64)
    y = np.zeros((L, E))
    order = range(L - 1, -1, -1) if reverse else range(L)
    for t in order:  # one explicit step at a time; channels e as array rows
        h = np.exp(dt[t, :, None] * A) * h + (dt[t] * u[t])[:, None] * B[t][None, :]
        y[t] = h @ C[t] + D * u[t]
    return y, h


def causal_conv_loop(x, w, b, state=None):
    """x: (L, E); w: (E, K); b: (E,); state: (K-1, E) inputs before x. SiLU applied."""
    L, E = x.shape
    K = w.shape[1]
    prev = np.zeros((K - 1, E)) if state is None else state
    xe = np.concatenate([prev, x], axis=0)
    out = np.zeros((L, E))
    for t in range(L):
        for k in range(K):
            out[t] += w[:, k] * xe[t + k]
    return silu(out + b), xe[L:]


def mixer(p: dict, prefix: str, a: np.ndarray, kind: str) -> np.ndarray:
    """One layer's mixer on a (L, D) sequence."""
    g = lambda n: p[prefix + n]  # noqa: E731
    E = g("A_log").shape[0]
    S = g("A_log").shape[1]
    R = g("dt_proj.weight").shape[1]
    xz = a @ g("in_proj.weight").T
    x, z = xz[:, :E], xz[:, E:]

    def branch(xin, conv, xproj, dtproj, A_log, Dp, reverse):
        seq = xin[::-1] if reverse else xin
        xc, _ = causal_conv_loop(seq, p[prefix + conv + ".weight"][:, 0, :], p[prefix + conv + ".bias"])
        if reverse:
            xc = xc[::-1]
        dbl = xc @ p[prefix + xproj].T
        dt = softplus(dbl[:, :R] @ p[prefix + dtproj + ".weight"].T + p[prefix + dtproj + ".bias"])
        y, _ = scan_loop(xc, dt, -np.exp(p[prefix + A_log]), dbl[:, R:R + S], dbl[:, R + S:],
                         p[prefix + Dp], reverse=reverse)
        return y, xc, dt, dbl

    y, xc, dt, dbl = branch(x, "conv1d", "x_proj.weight", "dt_proj", "A_log", "D", False)
    if kind == "v1":
        yb, _ = scan_loop(xc, dt, -np.exp(g("A_b_log")), dbl[:, R:R + S], dbl[:, R + S:], g("D"),
                          reverse=True)
        y = y + yb
    elif kind == "v2":
        yb, *_ = branch(x, "conv1d_b", "x_proj_b.weight", "dt_proj_b", "A_b_log", "D_b", True)
        y = (y + yb) / 2
    return (y * silu(z)) @ g("out_proj.weight").T


def rmsnorm(x, w, eps=1e-5):
    return x / np.sqrt((x ** 2).mean(-1, keepdims=True) + eps) * w


def forward(state_dict: dict, fbank: np.ndarray, *, kind: str, depth: int, patch: int = 16,
            token_order: str = "freq_major", class_token: str = "middle",
            pos_kind: str = "grid") -> np.ndarray:
    """fbank (T, F) -> logits (C,), float64, explicit loops."""
    p = {k: v.detach().double().numpy() for k, v in state_dict.items()}
    T, F = fbank.shape
    Fp, Tp = F // patch, T // patch
    W = p["patch_embed.proj.weight"]  # (D, 1, p, p) over (freq, time)
    Dm = W.shape[0]
    img = fbank.T  # (F, T): row 0 = lowest mel band
    grid = np.zeros((Fp, Tp, Dm))
    for f in range(Fp):
        for t in range(Tp):
            patch_ft = img[f * patch:(f + 1) * patch, t * patch:(t + 1) * patch]
            grid[f, t] = (W[:, 0] * patch_ft).sum(axis=(1, 2)) + p["patch_embed.proj.bias"]
    n_prefix = {"none": 0, "double": 2}.get(class_token, 1)
    pos = p["pos_embed.pos_embed"][0]
    for f in range(Fp):
        for t in range(Tp):
            grid[f, t] += pos[n_prefix + (f * Tp + t if pos_kind == "grid" else f)]
    if token_order == "freq_major":
        toks = [grid[f, t] for f in range(Fp) for t in range(Tp)]
    else:
        toks = [grid[f, t] for t in range(Tp) for f in range(Fp)]
    N = len(toks)
    if class_token in ("middle", "head", "tail"):
        at = {"middle": N // 2, "head": 0, "tail": N}[class_token]
        toks.insert(at, p["cls_token"][0, 0] + pos[0])
    elif class_token == "double":
        toks = [p["cls_token_head"][0, 0] + pos[0]] + toks + [p["cls_token_tail"][0, 0] + pos[1]]
    x = np.stack(toks)
    residual = x
    hidden = None
    for layer in range(depth):
        if hidden is not None:
            residual = residual + hidden
        hidden = mixer(p, f"layers.{layer}.mixer.", rmsnorm(residual, p[f"layers.{layer}.norm.weight"]), kind)
    out = rmsnorm(residual + hidden, p["norm_f.weight"])
    if class_token in ("middle", "head", "tail"):
        feat = out[at]
    elif class_token == "double":
        feat = (out[0] + out[-1]) / 2
    else:
        feat = out.mean(0)
    return feat @ p["head.weight"].T + p["head.bias"]


__all__ = ["forward", "scan_loop", "causal_conv_loop", "math"]
