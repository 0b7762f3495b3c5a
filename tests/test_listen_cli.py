"""`aum listen` with a fake PortAudio input stream that plays the shipped demo stream: the same
keywords are announced as `aum demo` finds, and input problems get clear errors."""

from __future__ import annotations

import threading

import soundfile as sf

from streaming_aum.cli import main
from streaming_aum.demo_cli import demo_assets
from streaming_aum import listen_cli


class FakeInputStream:
    """Calls ``callback`` with the demo stream's samples in blocks, from another thread."""

    def __init__(self, device, channels, samplerate, dtype, blocksize, callback):
        assert channels == 1 and dtype == "float32"
        self.audio, rate = sf.read(str(demo_assets()[0]), dtype="float32")
        assert rate == samplerate
        self.blocksize, self.callback = blocksize, callback
        self.thread = threading.Thread(target=self._play)

    def _play(self):
        for i in range(0, len(self.audio), self.blocksize):
            block = self.audio[i:i + self.blocksize, None]
            self.callback(block, len(block), None, None)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.thread.join()


class FakeSoundDevice:
    InputStream = FakeInputStream

    @staticmethod
    def query_devices(device=None, kind=None):
        return {"default_samplerate": 16000.0} if kind else "0 fake input"


def test_listen_announces_the_demo_keywords(monkeypatch, capsys):
    monkeypatch.setattr(listen_cli, "_sounddevice", lambda: FakeSoundDevice)
    assert main(["listen", "--seconds", "8"]) == 0
    out = capsys.readouterr().out
    assert "Listening on the default input at 16000 Hz" in out
    # the demo stream's first keywords ("on" at 0.56 s, "right" at 2.61 s), as aum demo finds
    assert "] on " in out and "] right " in out


def test_listen_errors(monkeypatch, capsys):
    def broken():
        raise listen_cli.ConfigError("aum listen needs sounddevice and PortAudio (x)")
    monkeypatch.setattr(listen_cli, "_sounddevice", broken)
    assert main(["listen", "--rate", "16000", "--seconds", "1"]) == 2
    assert "needs sounddevice and PortAudio" in capsys.readouterr().err
    assert main(["listen", "--block-ms", "0"]) == 2
