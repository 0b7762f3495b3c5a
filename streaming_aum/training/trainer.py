"""``aum train CONFIG``: seeded, resumable training with optional data parallelism.

* **Seeded**: every example's randomness comes from ``(seed, epoch, batch, position)``, so a
  run is reproducible and independent of the number of loader processes.
* **Resumable**: after every epoch ``<out>/checkpoint.pt`` (model, optimiser, schedule, epoch,
  best score) is written atomically; rerunning the same command continues from it. A run
  directory made with a different config is refused, never overwritten.
* **Outputs**: ``<out>/metrics.jsonl`` (one row per epoch: losses, accuracies, learning rate,
  clips/s), ``<out>/best/`` (``save_model`` format with the task's labels, the normalisation
  and the streaming window in ``config.extra``) whenever validation accuracy improves,
  ``<out>/train_config.json``.
* **Devices**: CPU (the fused numba scan has a backward kernel), CUDA when present (mamba-ssm's
  kernel when installed, else the reference scan).
* **Data parallel**: under ``torchrun --nproc_per_node N`` each process trains on every N-th
  batch with gradients averaged by DistributedDataParallel (gloo on CPU, nccl on CUDA); rank 0
  alone writes files and shows progress.
"""

from __future__ import annotations

import json
import math
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from ..audio_constants import SAMPLE_RATE
from ..config import AuMConfig, streaming_config
from ..errors import ConfigError
from ..loading import load_model, save_model
from ..model import AudioMamba
from .config import TrainConfig
from .samples import ClipSet, StreamSegmentMaker, features, read_clip, with_eval_floor

CHECKPOINT = "checkpoint.pt"
METRICS = "metrics.jsonl"
CONFIG_COPY = "train_config.json"
BEST = "best"


# ------------------------------------------------------------------------------------------
# Model
# ------------------------------------------------------------------------------------------

def build_model(cfg: TrainConfig, labels: list[str]) -> AudioMamba:
    """A fresh model of the configured size, or ``init_from``'s weights with a new head."""
    m = cfg.model
    extra = {"norm": m.norm, "task": cfg.data.task if cfg.data.kind == "keywords" else "folder",
             "window_s": cfg.streams.window_s}
    if m.init_from:
        model = load_model(m.init_from, input_frames=m.input_frames or None,
                           num_classes=len(labels))
        config = model.config.replace(labels=list(labels), output_activation="softmax",
                                      extra={**model.config.extra, **extra})
        fresh = AudioMamba(config)
        fresh.load_state_dict(model.state_dict())
        return fresh
    frames = max(16, int(round(cfg.data.clip_s * 100)) // 16 * 16)
    common = dict(embed_dim=m.embed_dim, depth=m.depth, mixer=m.mixer, d_state=m.d_state,
                  num_classes=len(labels), labels=list(labels), output_activation="softmax",
                  spectrogram_frames=m.input_frames or frames, extra=extra)
    if m.layout == "streaming":
        return AudioMamba(streaming_config(**common))
    return AudioMamba(AuMConfig(**common))


class PooledClassifier(nn.Module):
    """The model with the streaming runtime's window pooling: logits from the mean final
    features of the last ``window_columns`` columns (``None``: the model's own pooling)."""

    def __init__(self, model: AudioMamba) -> None:
        super().__init__()
        self.model = model

    def forward(self, feats: torch.Tensor, window_columns: int | None = None) -> torch.Tensor:
        if window_columns is None:
            return self.model(feats)
        tokens, _ = self.model.forward_tokens(feats)
        rows = self.model.config.freq_patches
        return self.model.forward_head(tokens[:, -window_columns * rows:].mean(dim=1))


# ------------------------------------------------------------------------------------------
# Data
# ------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Example:
    """What a loader process needs to build one example: kind ``clip`` (``index`` into the
    clip set) or ``segment`` (``index`` = context columns), and the example's own seed."""

    kind: str
    index: int
    seed: int


class TrainingExamples(torch.utils.data.Dataset):
    """Map-style dataset over :class:`Example` keys -> (features (T, 128), label)."""

    def __init__(self, clips: ClipSet, *, norm: str, clip_samples: int, augment,
                 segments: StreamSegmentMaker | None, target_frames: int | None) -> None:
        self.clips = clips
        self.norm = norm
        self.clip_samples = clip_samples
        self.augment = augment
        self.segments = segments
        self.target_frames = target_frames

    def __len__(self) -> int:
        return len(self.clips)

    def __getitem__(self, key: Example) -> tuple[torch.Tensor, int]:
        rng = np.random.default_rng(key.seed)
        if key.kind == "segment":
            wave, label = self.segments.make(key.index, rng)
        else:
            item = self.clips.items[key.index]
            wave = read_clip(item, self.clip_samples, rng if self.augment else None)
            if self.augment is not None:
                wave = self.augment(wave, rng)
            label = item.label
        return features(wave, self.norm, self.target_frames), label


def collate(batch: list[tuple[torch.Tensor, int]]) -> tuple[torch.Tensor, torch.Tensor]:
    return torch.stack([b[0] for b in batch]), torch.tensor([b[1] for b in batch])


def epoch_batches(n_clips: int, batch_size: int, seed: int, epoch: int, segment_fraction: float,
                  context_range: tuple[int, int], max_batches: int = 0
                  ) -> list[tuple[str, list[Example]]]:
    """The epoch's batches in order: shuffled clip batches with stream-segment batches mixed in
    (``segment_fraction`` of all batches). A segment batch shares one context length."""
    rng = np.random.default_rng([seed, epoch])
    order = rng.permutation(n_clips)
    n_clip_batches = max(1, n_clips // batch_size)
    n_seg = int(round(n_clip_batches * segment_fraction / (1.0 - segment_fraction)))
    kinds = np.array(["clip"] * n_clip_batches + ["segment"] * n_seg)
    rng.shuffle(kinds)
    if max_batches:
        kinds = kinds[:max_batches]
    batches = []
    ci = 0
    for b, kind in enumerate(kinds):
        base = int(rng.integers(0, 2**62))
        if kind == "clip":
            idx = order[ci * batch_size:(ci + 1) * batch_size]
            ci += 1
            batches.append(("clip", [Example("clip", int(i), base + j) for j, i in enumerate(idx)]))
        else:
            ctx = int(rng.integers(context_range[0], context_range[1] + 1))
            batches.append(("segment", [Example("segment", ctx, base + j)
                                        for j in range(batch_size)]))
    return batches


class _Batches(torch.utils.data.Sampler):
    def __init__(self, batches: list[list[Example]]) -> None:
        self.batches = batches

    def __iter__(self) -> Iterator[list[Example]]:
        return iter(self.batches)

    def __len__(self) -> int:
        return len(self.batches)


def augment_strength(cfg: TrainConfig, epoch: int) -> float:
    """The curriculum: 0 (clean clips, no stream segments) before ``ramp_epochs[0]``, rising
    linearly to 1 (the configured augmentation) at ``ramp_epochs[1]`` (0-based epochs)."""
    start, full = cfg.augment.ramp_epochs
    if epoch < start:
        return 0.0
    if full <= start or epoch >= full:
        return 1.0
    return (epoch - start + 1) / (full - start + 1)


def make_augmenter(cfg: TrainConfig, split: str, strength: float = 1.0):
    """The on-the-fly clip augmentation of the config at ``strength`` (probabilities scaled by
    it, the SNR range narrowed towards its top), or None when disabled / at strength 0; and
    the background bank and room bank it uses (also used by stream segments)."""
    from ..data import augment as aug
    from ..data.background import BackgroundBank
    from ..data.rooms import RirBank

    a = cfg.augment
    bg_dir = cfg.data.background
    backgrounds = (BackgroundBank.load(bg_dir, split) if bg_dir else BackgroundBank.noise_only())
    rirs = None
    if bg_dir:
        try:
            rirs = RirBank.load(bg_dir, split)
        except ConfigError:  # no room bank was made: rooms are simply not used
            rirs = None
    if not a.enabled:
        return None, backgrounds, rirs
    lo, hi = a.snr_db
    acfg = aug.AugmentConfig(p_background=a.p_background * strength,
                             snr_db=(hi - strength * (hi - lo), hi),
                             p_reverb=a.p_reverb * strength if rirs is not None else 0.0,
                             p_telephone=a.p_telephone * strength, peak=tuple(a.peak),
                             shift_s=a.shift_s, p_speed=a.p_speed * strength,
                             speeds=tuple(a.speeds))
    return aug.Augmenter(acfg, backgrounds, rirs), backgrounds, rirs


def _sound_source(cfg: TrainConfig, split: str):
    """Non-speech event sounds for stream segments: ``rng -> (wave (n,), class)`` from the
    event bank of ``aum data background`` (recordings + procedural), else procedural only."""
    from ..data.background import EventBank

    bank = None
    if cfg.data.background:
        try:
            bank = EventBank.load(cfg.data.background, split)
        except ConfigError:  # no event manifest there: procedural sounds only
            bank = None
    bank = bank if bank is not None else EventBank.procedural_only(split)

    def sample(rng: np.random.Generator) -> tuple[np.ndarray, str]:
        wave, label, _ = bank.sample(rng)
        return wave, label
    return sample


# ------------------------------------------------------------------------------------------
# Training
# ------------------------------------------------------------------------------------------

def _dist_info() -> tuple[int, int]:
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    return rank, world


def _lr_at(step: int, total: int, warmup: int, base: float) -> float:
    if step < warmup:
        return base * (step + 1) / warmup
    progress = (step - warmup) / max(1, total - warmup)
    return base * 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))


def evaluate_clips(model: AudioMamba, clips: ClipSet, norm: str, clip_samples: int,
                   target_frames: int | None, batch_size: int = 128,
                   device: torch.device = torch.device("cpu")) -> dict:
    """Clip accuracy and mean loss of ``model`` on ``clips`` (inference mode), scored clean
    but for the fixed evaluation noise floor (``samples.with_eval_floor``)."""
    model.eval()
    correct = 0
    loss_sum = 0.0
    n = len(clips)
    with torch.inference_mode():
        for lo in range(0, n, batch_size):
            items = clips.items[lo:lo + batch_size]
            feats = torch.stack([features(with_eval_floor(read_clip(it, clip_samples, None),
                                                          it.path.name), norm, target_frames)
                                 for it in items]).to(device)
            target = torch.tensor([it.label for it in items], device=device)
            logits = model(feats)
            loss_sum += float(F.cross_entropy(logits, target, reduction="sum"))
            correct += int((logits.argmax(-1) == target).sum())
    return {"accuracy": correct / max(1, n), "loss": loss_sum / max(1, n), "n": n}


def _check_run_dir(out: Path, cfg: TrainConfig) -> dict | None:
    """The checkpoint to resume from, or None for a new run; refuses a foreign run dir."""
    copy = out / CONFIG_COPY
    if copy.exists():
        saved = json.loads(copy.read_text())
        mine = cfg.to_dict()
        for d in (saved, mine):
            d.get("train", {}).pop("epochs", None)  # more epochs may be asked for on resume
        if saved != mine:
            raise ConfigError(f"{out} holds a run with a different config ({copy}); choose "
                              "another [train] out, or delete that directory to start over")
    elif out.exists() and any(out.iterdir()):
        raise ConfigError(f"{out} exists and is not a training run directory; choose another "
                          "[train] out (nothing there is overwritten)")
    ckpt = out / CHECKPOINT
    if ckpt.exists():
        return torch.load(ckpt, map_location="cpu", weights_only=False)
    return None


def _save_atomic(obj, path: Path) -> None:
    tmp = path.with_suffix(path.suffix + ".tmp")
    torch.save(obj, tmp)
    os.replace(tmp, path)


def train(cfg: TrainConfig, *, progress: bool = True, log=print,
          stop_after_epochs: int | None = None) -> Path:
    """Run (or resume) training; returns the ``best`` model directory.

    ``stop_after_epochs`` ends the process's work after that many epochs (counted from the
    start of the run, not of this call), as an interruption would: a later call resumes.
    Resuming with a larger ``[train] epochs`` re-plans the cosine schedule's remaining steps."""
    rank, world = _dist_info()
    t = cfg.train
    if t.threads:
        torch.set_num_threads(t.threads)
    device = torch.device("cuda" if (t.device == "cuda" or (t.device == "auto" and
                                                            torch.cuda.is_available())) else "cpu")
    if world > 1 and not torch.distributed.is_initialized():
        backend = "nccl" if device.type == "cuda" else "gloo"
        torch.distributed.init_process_group(backend)
        if device.type == "cuda":
            device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
            torch.cuda.set_device(device)
    out = Path(t.out)
    resume = _check_run_dir(out, cfg)
    if world > 1:
        torch.distributed.barrier()
    if rank == 0:
        out.mkdir(parents=True, exist_ok=True)
        (out / CONFIG_COPY).write_text(json.dumps(cfg.to_dict(), indent=2))

    # Data ----------------------------------------------------------------------------------
    d = cfg.data
    if d.kind == "keywords":
        train_set = ClipSet.from_keywords(d.clips, d.train_split, d.task)
        val_set = ClipSet.from_keywords(d.clips, d.val_split, d.task)
    else:
        train_set = ClipSet.from_folder(d.folder, "train", d.val_fraction)
        val_set = ClipSet.from_folder(d.folder, "val", d.val_fraction)
    labels = train_set.labels
    torch.manual_seed(t.seed)
    model = build_model(cfg, labels).to(device)
    streaming = model.config.pos_embed == "freq_rows"
    target_frames = None if streaming else model.config.spectrogram_frames
    clip_samples = int(round(d.clip_s * SAMPLE_RATE))
    augmenter, backgrounds, rirs = make_augmenter(cfg, "train")
    seg_fraction = cfg.streams.fraction if streaming else 0.0
    segments = None
    if seg_fraction > 0:
        segments = StreamSegmentMaker(train_set, backgrounds, window_columns=cfg.window_columns,
                                      context_columns=cfg.context_columns,
                                      snr_db=cfg.augment.snr_db, rirs=rirs,
                                      p_reverb=cfg.augment.p_reverb,
                                      sounds=_sound_source(cfg, "train"), peak=cfg.augment.peak)
    dataset = TrainingExamples(train_set, norm=cfg.model.norm, clip_samples=clip_samples,
                               augment=augmenter, segments=segments, target_frames=target_frames)

    scorer: nn.Module = PooledClassifier(model)
    if world > 1:
        scorer = nn.parallel.DistributedDataParallel(scorer)
    decay = [p for n, p in model.named_parameters() if p.ndim >= 2 and "pos_embed" not in n]
    no_decay = [p for n, p in model.named_parameters() if not (p.ndim >= 2 and "pos_embed" not in n)]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": t.weight_decay},
                             {"params": no_decay, "weight_decay": 0.0}], lr=t.lr)
    per_epoch = len(epoch_batches(len(train_set), t.batch_size, t.seed, 0, seg_fraction,
                                  cfg.context_columns, t.max_batches_per_epoch)) // world
    total_steps = per_epoch * t.epochs
    warmup = int(per_epoch * t.warmup_epochs)
    start_epoch, step, best = 0, 0, -1.0
    if resume is not None:
        model.load_state_dict(resume["model"])
        opt.load_state_dict(resume["optimizer"])
        start_epoch, step, best = resume["epoch"] + 1, resume["step"], resume["best"]
        if rank == 0:
            log(f"resuming {out} after epoch {resume['epoch'] + 1}")
    gen = torch.Generator().manual_seed(t.seed + 7919 * rank)
    from ..data.augment import spec_augment
    from ..data.vtlp import vtlp_batch

    for epoch in range(start_epoch, t.epochs):
        if stop_after_epochs is not None and epoch >= stop_after_epochs:
            break
        strength = augment_strength(cfg, epoch)
        dataset.augment = make_augmenter(cfg, "train", strength)[0]
        batches = epoch_batches(len(train_set), t.batch_size, t.seed, epoch,
                                seg_fraction if strength > 0 else 0.0,
                                cfg.context_columns, t.max_batches_per_epoch)
        mine = batches[rank::world][:per_epoch]
        kinds = [k for k, _ in mine]
        loader = torch.utils.data.DataLoader(
            dataset, batch_sampler=_Batches([b for _, b in mine]), collate_fn=collate,
            num_workers=t.loader_workers, persistent_workers=False)
        model.train()
        t0 = time.perf_counter()
        seen = correct = 0
        loss_sum = 0.0
        bar = None
        if progress and rank == 0:
            from tqdm import tqdm
            bar = tqdm(total=len(mine), desc=f"epoch {epoch + 1}/{t.epochs}", unit="batch",
                       file=sys.stderr, dynamic_ncols=True)
        for kind, (feats, target) in zip(kinds, loader):
            gen.manual_seed(t.seed * 1_000_003 + step * 31 + rank)
            if cfg.augment.enabled and cfg.augment.p_vtlp > 0 and strength > 0:
                # before SpecAugment, so that masks stay straight bands of the warped features
                feats = vtlp_batch(feats, gen, cfg.augment.p_vtlp * strength,
                                   tuple(cfg.augment.vtlp_alpha))
            if cfg.augment.enabled and cfg.augment.spec_augment and strength > 0:
                feats = spec_augment(feats, gen)
            feats, target = feats.to(device), target.to(device)
            for group in opt.param_groups:
                group["lr"] = _lr_at(step, total_steps, warmup, t.lr)
            window = cfg.window_columns if kind == "segment" else None
            logits = scorer(feats, window)
            loss = F.cross_entropy(logits, target, label_smoothing=t.label_smoothing)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            opt.step()
            step += 1
            seen += len(target)
            loss_sum += float(loss.detach()) * len(target)
            correct += int((logits.argmax(-1) == target).sum())
            if bar is not None:
                rate = seen * world / (time.perf_counter() - t0)
                bar.set_postfix(loss=f"{loss_sum / seen:.3f}", acc=f"{correct / seen:.3f}",
                                clips_s=f"{rate:.0f}")
                bar.update(1)
        if bar is not None:
            bar.close()
        elapsed = time.perf_counter() - t0
        if rank == 0:
            val = evaluate_clips(model, val_set, cfg.model.norm, clip_samples, target_frames,
                                 device=device)
            row = {"epoch": epoch + 1, "train_loss": loss_sum / max(1, seen),
                   "train_accuracy": correct / max(1, seen), "val_loss": val["loss"],
                   "val_accuracy": val["accuracy"], "lr": opt.param_groups[0]["lr"],
                   "examples": seen * world, "seconds": round(elapsed, 2),
                   "examples_per_s": round(seen * world / elapsed, 1), "processes": world}
            with open(out / METRICS, "a") as f:
                f.write(json.dumps(row) + "\n")
            log(f"epoch {epoch + 1}: train loss {row['train_loss']:.4f} acc "
                f"{row['train_accuracy']:.4f} | val loss {val['loss']:.4f} acc "
                f"{val['accuracy']:.4f} | {row['examples_per_s']} examples/s")
            if val["accuracy"] > best:
                best = val["accuracy"]
                model.eval()
                save_model(model, out / BEST, overwrite=True)
                (out / BEST / "training.json").write_text(json.dumps(
                    {"epoch": epoch + 1, "val_accuracy": best, "config": cfg.to_dict()}, indent=2))
            _save_atomic({"model": model.state_dict(), "optimizer": opt.state_dict(),
                          "epoch": epoch, "step": step, "best": best}, out / CHECKPOINT)
        if world > 1:
            torch.distributed.barrier()
    if world > 1:
        torch.distributed.destroy_process_group()
    return out / BEST
