"""Score audio with an ``aum export`` ONNX model: ONNX Runtime only, no checkpoint, no PyTorch
model.

Everything needed to featurise audio comes from the export's metadata (``read_metadata``):
the normalisation preset, whether time is dynamic and, for official ``grid`` models, the fixed
input length. The features are exactly those of ``streaming_aum.offline.features_for_model``,
so the scores equal ``aum classify --mode offline`` to float rounding (checked to 1e-4):

* grid (official) models: clip DC removed, log-mel padded with zero rows or cropped to
  ``frames``, then normalised;
* ``freq_rows`` (streaming-layout) models: every frame, no clip-level DC removal.

Waveform-input exports (``aum export --waveform``, metadata ``input_kind == "waveform"``) hold
that front end in the graph: the scorer feeds the waveform itself (mono float32 at 16 kHz, read
and resampled by ``audio_io.load_audio`` as ``aum classify`` does), after checking that it has
at least the metadata's ``min_samples`` (400 for grid models, one patch column, 2800, for
``freq_rows`` models): a graph cannot raise, so shorter audio is an ``AudioInputError`` here,
never an ONNX Runtime failure. The scores equal ``aum classify --mode offline`` to 1e-4 as well.

Batching. Grid features all have ``frames`` frames, so any files batch together. A ``freq_rows``
model mean-pools over all of its tokens, so padding a short clip would change its result: a
batch may only hold inputs with the same number of frames. A waveform graph takes one ``(B, N)``
tensor, and padding a waveform would change its clip mean and its frames, so its batches hold
waveforms of the same number of samples, for every model. ``score_files`` therefore groups
*consecutive* files of equal input shape into a batch (a batch is cut where the shape changes),
which keeps the input order and the memory bound; files of all-different lengths run one at a
time. Sort the inputs by length to batch more of them.

Memory. ``score_files`` reads one file at a time and keeps at most one batch of inputs
(``batch_size`` x frames x 128, or ``batch_size`` x samples, float32) plus the file just read,
whatever the number of files.

Providers. ``provider="cpu"`` runs the CPUExecutionProvider. ``provider="cuda"`` needs the
``gpu-onnx`` extra (onnxruntime-gpu, installed *instead of* ``onnx``, never both: the two
wheels overwrite each other's files); the session gets the CUDAExecutionProvider alone and
ONNX Runtime's silent retry on CPU is switched off (``enable_fallback=0``), so a CUDA failure is
an error, never a slow CPU run. Shape-computation nodes that ONNX Runtime itself prefers to run
on the host stay allowed (its ``session.disable_cpu_ep_fallback`` option would reject every
dynamic-shape graph for that reason). Inputs are copied to the device once per batch and
bound with IO binding; the logits stay on the device until one copy back per batch.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, Sequence

import numpy as np
import torch

from streaming_aum.audio_constants import FRAME_SAMPLES, N_MELS, PATCH_SIZE, SAMPLE_RATE
from streaming_aum.audio_io import load_audio, validate_waveform
from streaming_aum.errors import AudioInputError, ConfigError
from streaming_aum.features import waveform_to_features

PROVIDERS: dict[str, str] = {"cpu": "CPUExecutionProvider", "cuda": "CUDAExecutionProvider"}


def _require_ort(provider: str) -> Any:
    try:
        import onnxruntime
    except ImportError as exc:
        how = ("the 'onnx' extra, or for --provider cuda the 'gpu-onnx' extra instead "
               "(never both)" if provider == "cuda" else "the 'onnx' extra")
        raise ConfigError(f"ONNX scoring needs onnxruntime: install {how}, e.g. pip install "
                          f"'streaming_aum[{'gpu-onnx' if provider == 'cuda' else 'onnx'}]' "
                          f"({exc})") from exc
    return onnxruntime


def _check_provider(ort: Any, provider: str) -> str:
    if provider not in PROVIDERS:
        raise ConfigError(f"unknown provider {provider!r}; choose one of {sorted(PROVIDERS)}")
    name = PROVIDERS[provider]
    available = ort.get_available_providers()
    if name not in available:
        if provider == "cuda":
            raise ConfigError(
                "the CUDA provider is not available in this onnxruntime (available: "
                f"{', '.join(available)}); install the 'gpu-onnx' extra INSTEAD of 'onnx' "
                "(pip uninstall onnxruntime; pip install 'streaming_aum[gpu-onnx]'): the two "
                "onnxruntime wheels overwrite each other's files, never install both")
        raise ConfigError(f"{name} is not available in this onnxruntime (available: "
                          f"{', '.join(available)})")
    return name


def _one_shape(items: Sequence[np.ndarray], empty: str,
               mixed: Callable[[list[tuple[int, ...]]], str]) -> tuple[int, ...]:
    """The one shape of a non-empty batch's items; AudioInputError ``empty`` for no items,
    ``mixed(sorted shapes)`` for several shapes (inputs are never padded to a common one)."""
    if len(items) == 0:
        raise AudioInputError(empty)
    shapes = {tuple(np.shape(item)) for item in items}
    if len(shapes) != 1:
        raise AudioInputError(mixed(sorted(shapes)))
    return shapes.pop()


def _stack_finite(items: Sequence[np.ndarray], nonfinite: str) -> np.ndarray:
    """Equal-shape items -> one contiguous float32 batch; AudioInputError ``nonfinite``
    (formatted with the count) if any value is NaN/Inf."""
    x = np.stack([np.asarray(item, dtype=np.float32) for item in items])
    if not np.isfinite(x).all():
        raise AudioInputError(nonfinite.format(int((~np.isfinite(x)).sum())))
    return np.ascontiguousarray(x)


class OnnxScorer:
    """An ``aum export`` model in ONNX Runtime, with the featurisation its metadata describes.

    Args:
        path: the ``.onnx`` file written by ``aum export`` (``export_onnx``).
        provider: ``"cpu"`` or ``"cuda"`` (see the module docstring).
        threads: ONNX Runtime intra-op threads (``None``: its default, one per core).

    Attributes: ``metadata`` (``read_metadata``), ``labels``, ``activation``, ``norm``,
    ``dynamic_frames``, ``frames`` (grid input length or ``None``), ``waveform_input`` (the
    graph takes ``waveform (B, N)`` samples, not features), ``min_samples`` (waveform input:
    fewest samples accepted, else ``None``), ``session``.
    """

    def __init__(self, path: str | os.PathLike[str], provider: str = "cpu",
                 threads: int | None = None) -> None:
        ort = _require_ort(provider)
        ep = _check_provider(ort, provider)
        from .onnx_export import read_metadata

        self.path = Path(path)
        if not self.path.is_file():
            raise ConfigError(f"{self.path}: no such ONNX file")
        try:
            self.metadata = read_metadata(self.path)
        except ConfigError:
            raise
        except Exception as exc:  # protobuf DecodeError, OSError, ...
            raise ConfigError(f"{self.path}: not a readable ONNX model ({exc})") from exc
        meta = self.metadata
        self.labels: list[str] = list(meta["labels"])
        self.activation: str = meta["activation"]
        self.norm: str = meta["norm"]
        self.dynamic_frames: bool = bool(meta["dynamic_frames"])
        self.frames: int | None = None if self.dynamic_frames else int(meta["frames"])
        self.patch_size: int = int(meta["config"].get("patch_size", PATCH_SIZE))
        self.n_mels: int = int(meta["config"].get("n_mels", N_MELS))
        self.input_name: str = meta["input"]
        self.output_name: str = meta["output"]
        if self.activation not in ("sigmoid", "softmax"):
            raise ConfigError(f"{self.path}: unknown output activation {self.activation!r}")
        self.waveform_input, self.min_samples = _waveform_spec(self.path, meta)
        if threads is not None and (isinstance(threads, bool) or int(threads) < 1):
            raise ConfigError(f"threads must be a positive integer, got {threads!r}")

        self._ort = ort
        self.provider = provider
        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        if threads is not None:
            options.intra_op_num_threads = int(threads)
            options.inter_op_num_threads = 1
        try:
            # enable_fallback=0: no silent retry on the CPU provider when CUDA fails
            self.session = ort.InferenceSession(str(self.path), options, providers=[ep],
                                                enable_fallback=0)
        except Exception as exc:
            raise ConfigError(f"{self.path}: ONNX Runtime cannot load it with {ep} "
                              f"({exc})") from exc
        if ep not in self.session.get_providers():
            raise ConfigError(f"{self.path}: ONNX Runtime did not enable {ep} "
                              f"(session providers: {self.session.get_providers()})")
        names_in = [i.name for i in self.session.get_inputs()]
        names_out = [o.name for o in self.session.get_outputs()]
        if self.input_name not in names_in or self.output_name not in names_out:
            raise ConfigError(f"{self.path}: metadata names input {self.input_name!r} / output "
                              f"{self.output_name!r}, the graph has {names_in} / {names_out}")

    # Features -----------------------------------------------------------------------------
    def features(self, waveform: torch.Tensor | np.ndarray) -> np.ndarray:
        """(n,) float samples at 16 kHz -> normalised (T, 128) float32 features, as
        ``features_for_model`` computes them for the exported model."""
        if isinstance(waveform, np.ndarray):
            waveform = torch.from_numpy(np.ascontiguousarray(waveform))
        feats = waveform_to_features(waveform, preset=self.norm,
                                     target_frames=None if self.dynamic_frames else self.frames,
                                     remove_clip_dc=not self.dynamic_frames)
        return np.ascontiguousarray(feats.numpy(), dtype=np.float32)

    def waveform(self, waveform: torch.Tensor | np.ndarray) -> np.ndarray:
        """(n,) float samples at 16 kHz -> the checked (n,) float32 input of a waveform export.

        Raises:
            AudioInputError: not 1-D float audio, NaN/Inf, or fewer than ``min_samples``.
        """
        if isinstance(waveform, np.ndarray):
            waveform = torch.from_numpy(np.ascontiguousarray(waveform))
        need = self.min_samples or FRAME_SAMPLES
        reason = ("one fbank frame" if self.frames is not None
                  else f"one patch column ({self.patch_size} frames) of this streaming-layout "
                       "model")
        w = validate_waveform(waveform, min_samples=need, reason=reason)
        return np.ascontiguousarray(w.numpy(), dtype=np.float32)

    def inputs(self, waveform: torch.Tensor | np.ndarray) -> np.ndarray:
        """(n,) float samples at 16 kHz -> what the graph takes for one file: ``waveform``
        (n,) for waveform exports, else ``features`` (T, 128)."""
        return self.waveform(waveform) if self.waveform_input else self.features(waveform)

    # Inference ----------------------------------------------------------------------------
    def _check_batch(self, items: Sequence[np.ndarray]) -> np.ndarray:
        if self.waveform_input:
            return self._check_waveform_batch(items)
        return self._check_feature_batch(items)

    def _check_waveform_batch(self, waves: Sequence[np.ndarray]) -> np.ndarray:
        shape = _one_shape(
            waves, "score_batch needs at least one (n,) waveform array",
            lambda shapes: f"a batch of waveforms must hold one length, got shapes {shapes}: "
                           "padding would change the clip mean and the frames; batch equal "
                           "lengths only (score_files groups them)")
        if len(shape) != 1:
            raise AudioInputError(f"waveforms must be (n,) mono samples at {SAMPLE_RATE} Hz; "
                                  f"got shape {shape}")
        need = self.min_samples or FRAME_SAMPLES
        if shape[0] < need:
            raise AudioInputError(f"got {shape[0]} samples; this export needs at least {need} "
                                  f"({need / SAMPLE_RATE:g} s at {SAMPLE_RATE // 1000} kHz)")
        return _stack_finite(waves, "waveforms contain {} NaN/Inf samples")

    def _check_feature_batch(self, feats: Sequence[np.ndarray]) -> np.ndarray:
        shape = _one_shape(
            feats, "score_batch needs at least one (T, 128) feature array",
            lambda shapes: f"a batch must hold features of one shape, got {shapes}: padding "
                           "would change a mean-pooled (freq_rows) model's result; batch equal "
                           "lengths only (score_files groups them)")
        if len(shape) != 2 or shape[1] != self.n_mels:
            raise AudioInputError(f"features must be (T, {self.n_mels}); got {shape}")
        frames = shape[0]
        if frames < self.patch_size:
            raise AudioInputError(f"got {frames} frames; at least {self.patch_size} frames "
                                  "(one patch column) are needed")
        if self.frames is not None and frames != self.frames:
            raise AudioInputError(f"this export takes exactly {self.frames} frames (its position "
                                  f"grid is fixed); got {frames}. Use OnnxScorer.features")
        return _stack_finite(feats, "features contain {} NaN/Inf values")

    def score_batch(self, feats: Sequence[np.ndarray]) -> np.ndarray:
        """A list of equal-shape inputs -> logits (B, C) float32 (on the host): (T, 128) feature
        arrays, or for a waveform export (n,) float32 waveforms at 16 kHz (``inputs``).

        CUDA: the batch is copied to the device once, bound as an OrtValue, the output is
        allocated on the device, and the logits are copied back once (IO binding)."""
        x = self._check_batch(feats)
        if self.provider == "cuda":
            binding = self.session.io_binding()
            x_dev = self._ort.OrtValue.ortvalue_from_numpy(x, "cuda", 0)
            binding.bind_ortvalue_input(self.input_name, x_dev)
            binding.bind_output(self.output_name, "cuda")
            self.session.run_with_iobinding(binding)
            return binding.copy_outputs_to_cpu()[0]
        return self.session.run([self.output_name], {self.input_name: x})[0]

    def probabilities(self, logits: np.ndarray) -> np.ndarray:
        """Logits -> probabilities with the export's activation (sigmoid or softmax)."""
        t = torch.from_numpy(np.asarray(logits, dtype=np.float32))
        p = torch.softmax(t, dim=-1) if self.activation == "softmax" else torch.sigmoid(t)
        return p.numpy()

    def score_files(self, paths: Iterable[str | os.PathLike[str]], batch_size: int = 8
                    ) -> Iterator[tuple[Path, np.ndarray, np.ndarray, float]]:
        """Yield ``(path, logits (C,), probs (C,), duration_s)`` per file, in input order.

        Files are read one by one; a batch runs as soon as it holds ``batch_size`` files or the
        next file's input shape differs (frame count for ``freq_rows`` models, sample count for
        waveform exports; see the module docstring). An unreadable or too-short file raises
        ``AudioInputError`` after the files before it were yielded.
        """
        for results in self.score_batches(paths, batch_size):
            yield from results

    def score_batches(self, paths: Iterable[str | os.PathLike[str]], batch_size: int = 8
                      ) -> Iterator[list[tuple[Path, np.ndarray, np.ndarray, float]]]:
        """As ``score_files``, one list per ONNX Runtime call (for writers that flush per batch)."""
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
            raise ConfigError(f"batch_size must be a positive integer, got {batch_size!r}")
        pending: list[tuple[Path, np.ndarray, float]] = []
        for item in paths:
            path = Path(item)
            try:
                waveform = load_audio(path)
                model_input = self.inputs(waveform)
            except AudioInputError as exc:
                if pending:
                    yield self._run(pending)
                if str(path) in str(exc):
                    raise
                raise AudioInputError(f"{path}: {exc}") from exc
            if pending and (len(pending) >= batch_size
                            or model_input.shape != pending[0][1].shape):
                yield self._run(pending)
                pending = []
            pending.append((path, model_input, waveform.shape[0] / SAMPLE_RATE))
        if pending:
            yield self._run(pending)

    def _run(self, pending: list[tuple[Path, np.ndarray, float]]
             ) -> list[tuple[Path, np.ndarray, np.ndarray, float]]:
        logits = self.score_batch([f for _, f, _ in pending])
        probs = self.probabilities(logits)
        return [(path, logits[i], probs[i], duration)
                for i, (path, _, duration) in enumerate(pending)]


def _waveform_spec(path: Path, meta: dict[str, Any]) -> tuple[bool, int | None]:
    """(waveform_input, min_samples) from the metadata; ConfigError for what cannot be fed."""
    kind = meta.get("input_kind", "fbank")
    if kind == "fbank":
        return False, None
    if kind != "waveform":
        raise ConfigError(f"{path}: unknown input kind {kind!r} in the metadata; this scorer "
                          "reads 'fbank' and 'waveform' exports")
    rate = meta.get("sample_rate")
    if rate != SAMPLE_RATE:
        raise ConfigError(f"{path}: the waveform input is at {rate} Hz; only {SAMPLE_RATE} Hz "
                          "exports are supported")
    need = meta.get("min_samples")
    if isinstance(need, bool) or not isinstance(need, int) or need < FRAME_SAMPLES:
        raise ConfigError(f"{path}: min_samples in the metadata must be an integer >= "
                          f"{FRAME_SAMPLES}, got {need!r}")
    return True, need
