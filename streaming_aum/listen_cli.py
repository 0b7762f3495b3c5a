"""``aum listen``: live keyword spotting from a microphone (sounddevice / PortAudio).

Audio is captured at the device's rate (``--rate``, default: the device's default rate) in
blocks of ``--block-ms``; the PortAudio callback only copies each block into a queue, and the
main thread pushes blocks into the streaming runtime (which resamples to 16 kHz
chunk-invariantly) and the event tracker, printing each keyword when it is decided. Input
overflows (the model falling behind the microphone) are counted and reported, never silent.
Stops after ``--seconds`` or on Ctrl-C, then prints a summary.

Needs the ``mic`` extra (sounddevice) and Debian's ``libportaudio2``.
"""

from __future__ import annotations

import argparse
import queue
import sys
import time
from typing import Iterator

import numpy as np

from .errors import AudioInputError, ConfigError


def _sounddevice():
    try:
        import sounddevice as sd
    except (ImportError, OSError) as exc:  # OSError: PortAudio library missing
        raise ConfigError(f"aum listen needs sounddevice and PortAudio ({exc}); install with "
                          "`pip install 'streaming_aum[mic]'` and `apt-get install "
                          "libportaudio2`") from None
    return sd


def microphone_blocks(device: int | str | None, rate: int, block_ms: float,
                      seconds: float | None) -> Iterator[tuple[np.ndarray, int]]:
    """Yield ``(block (n,) float32 mono at rate, overflows so far)`` from the input device."""
    sd = _sounddevice()
    blocks: queue.Queue = queue.Queue()
    overflows = 0

    def callback(indata, frames, time_info, status) -> None:  # PortAudio's thread
        nonlocal overflows
        if status and status.input_overflow:
            overflows += 1
        blocks.put(indata[:, 0].astype(np.float32, copy=True))

    blocksize = max(1, round(rate * block_ms / 1000))
    deadline = None if seconds is None else time.monotonic() + seconds
    try:
        stream = sd.InputStream(device=device, channels=1, samplerate=rate, dtype="float32",
                                blocksize=blocksize, callback=callback)
    except Exception as exc:  # PortAudioError and invalid settings: name the device and rate
        raise AudioInputError(f"cannot open input device {device!r} at {rate} Hz: {exc}; see "
                              "`aum listen --list-devices`") from None
    with stream:
        while deadline is None or time.monotonic() < deadline:
            try:
                block = blocks.get(timeout=0.5)
            except queue.Empty:
                continue
            yield block, overflows


def add_parser(sub: argparse._SubParsersAction) -> None:
    from .eval_cli import add_event_arguments

    p = sub.add_parser("listen", help="live keyword spotting from a microphone",
                       description=__doc__.split("\n\n")[0])
    p.add_argument("--model", default=None,
                   help="saved model directory or checkpoint (default: the shipped model)")
    p.add_argument("--device", default=None,
                   help="input device index or name substring (default: the system default)")
    p.add_argument("--rate", type=int, default=None,
                   help="capture rate in Hz (default: the device's default rate)")
    p.add_argument("--block-ms", type=float, default=50.0, help="capture block (default 50 ms)")
    p.add_argument("--seconds", type=float, default=None, help="stop after this long")
    p.add_argument("--list-devices", action="store_true", help="list audio devices and exit")
    add_event_arguments(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from .eval_cli import event_config_from_args, load_model_or_default
    from .evaluation import DecisionTracker
    from .events import describe_threshold
    from .stream_cli import make_runtime, parse_window

    if args.list_devices:
        print(_sounddevice().query_devices())
        return 0
    if not (args.block_ms > 0 and (args.seconds is None or args.seconds > 0)):
        raise ConfigError("--block-ms and --seconds must be positive")
    device = args.device
    if isinstance(device, str) and device.isdigit():
        device = int(device)
    rate = args.rate
    if rate is None:
        info = _sounddevice().query_devices(device, "input")
        rate = int(info["default_samplerate"])
    model = load_model_or_default(args.model)
    config = event_config_from_args(args, model.labels, model.config.extra.get("events"))
    window_s = parse_window(args.window_s, model)
    runtime = make_runtime(model, window_s, hop_columns=1, input_rate=rate)
    tracker = DecisionTracker(model.labels, config)
    print(f"Listening on {device if device is not None else 'the default input'} at {rate} Hz "
          f"(window {window_s if window_s is not None else 'inf'} s, threshold "
          f"{describe_threshold(args.threshold)}); Ctrl-C stops.")
    sys.stdout.flush()
    t_prev, n_events, overflows = 0.0, 0, 0
    try:
        for block, overflows in microphone_blocks(device, rate, args.block_ms, args.seconds):
            for r in runtime.push(block):
                new, _ = tracker.update(t_prev, r.t_end, r.probs.double().numpy())
                t_prev = r.t_end
                for a in new:
                    n_events += 1
                    print(f"[{a.onset_s:8.2f} s] {a.label:<9} (p={a.score:.2f})")
                    sys.stdout.flush()
    except KeyboardInterrupt:
        pass
    print(f"\n{n_events} keyword event(s) in {t_prev:.1f} s"
          + (f"; {overflows} input overflow(s): the model fell behind the microphone"
             if overflows else ""))
    return 0
