"""Timeline SVG: parses as XML, one line per drawn class, event spans at the right x, escaping,
readable ticks on a 2-minute stream, no silent overwrite."""

from __future__ import annotations

import xml.etree.ElementTree as ET

import numpy as np
import pytest

from streaming_aum.evaluation import Detection
from streaming_aum.events import Event
from streaming_aum.timeline import MAX_WIDTH_PX, render_timeline_svg, timeline_svg

NS = {"s": "http://www.w3.org/2000/svg"}
LABELS = ["yes", "no", "a&b <c>", "_unknown_", "_silence_"]


def frames(seconds: float, n_classes: int = len(LABELS), seed: int = 0):
    t = 0.175 + 0.16 * np.arange(int((seconds - 0.175) / 0.16) + 1)
    p = np.random.default_rng(seed).dirichlet(np.ones(n_classes), size=t.size)
    return t, p


def parse(text: str) -> ET.Element:
    return ET.fromstring(text)


def x_of(root: ET.Element, seconds: float) -> float:
    return float(root.get("data-x0")) + seconds * float(root.get("data-px-per-s"))


@pytest.mark.parametrize("show_faint, drawn", [(True, LABELS), (False, LABELS[:3])])
def test_one_path_per_drawn_class(show_faint, drawn):
    t, p = frames(10.0)
    root = parse(timeline_svg(t, p, LABELS, [], title="x", threshold=0.5, show_faint=show_faint))
    paths = root.findall(".//s:path[@class='prob']", NS)
    assert [e.get("data-label") for e in paths] == drawn
    first = paths[0].get("d").split(" L")
    assert len(first) == t.size
    x0, y0 = first[0][1:].split()
    assert float(x0) == pytest.approx(x_of(root, t[0]), abs=0.06)
    assert len(root.findall(".//s:line[@class='threshold']", NS)) == 1


def test_event_spans_and_truth_lane_at_right_x(tmp_path):
    t, p = frames(20.0)
    events = [Detection(2.5, 3.25, "yes", 0.91, 2.66), Event(10.0, 11.5, "no", 0.7)]
    truth = [{"onset_s": 2.6, "offset_s": 3.0, "label": "yes", "kind": "kw"},
             {"onset_s": 7.0, "offset_s": 8.0, "label": "dog & cat", "kind": "env"}]
    path = render_timeline_svg(t, p, LABELS, events, truth, path=tmp_path / "t.svg",
                               threshold=0.5)
    root = ET.parse(path).getroot()
    rects = root.findall(".//s:rect[@class='event']", NS)
    assert [r.get("data-label") for r in rects] == ["yes", "no"]
    for r, e in zip(rects, events):
        assert float(r.get("x")) == pytest.approx(x_of(root, e.onset_s), abs=0.006)
        assert float(r.get("width")) == pytest.approx(
            x_of(root, e.offset_s) - x_of(root, e.onset_s), abs=0.011)
    ticks = root.findall(".//s:line[@class='decision']", NS)  # only Detections have one
    assert len(ticks) == 1 and float(ticks[0].get("x1")) == pytest.approx(x_of(root, 2.66),
                                                                         abs=0.006)
    truth_rects = root.findall(".//s:rect[@class='truth']", NS)
    assert [r.get("data-label") for r in truth_rects] == ["yes", "dog & cat"]
    assert float(truth_rects[1].get("x")) == pytest.approx(x_of(root, 7.0), abs=0.006)
    texts = [e.text for e in root.iter("{http://www.w3.org/2000/svg}text")]
    assert "dog & cat" in texts and "a&b <c>" in texts  # escaped in the file, intact when parsed


def test_title_is_escaped():
    t, p = frames(3.0)
    text = timeline_svg(t, p, LABELS, [], title='<script>"&"</script>')
    assert "<script>" not in text
    root = parse(text)
    assert root.find("s:title", NS).text == '<script>"&"</script>'


def test_two_minute_stream_stays_readable():
    t, p = frames(120.0)
    root = parse(timeline_svg(t, p, LABELS, [Event(60.0, 61.0, "yes", 0.9)], duration_s=120.0))
    width = float(root.get("width"))
    assert 2000 < width < MAX_WIDTH_PX
    labels = root.findall(".//s:text[@class='tick-label']", NS)
    xs = [float(e.get("x")) for e in labels]
    assert labels[0].text == "0" and int(labels[-1].text) >= 115
    assert min(np.diff(xs)) >= 36  # labels never collide
    assert len(root.findall(".//s:line[@class='tick']", NS)) == 121  # a tick every second


def test_long_stream_width_is_capped():
    t, p = frames(1800.0, seed=1)
    root = parse(timeline_svg(t, p, LABELS, []))
    assert float(root.get("width")) <= MAX_WIDTH_PX + 1


def test_refuses_overwrite_and_bad_shapes(tmp_path):
    t, p = frames(3.0)
    target = tmp_path / "t.svg"
    target.write_text("keep")
    with pytest.raises(FileExistsError):
        render_timeline_svg(t, p, LABELS, [], path=target)
    assert target.read_text() == "keep"
    render_timeline_svg(t, p, LABELS, [], path=target, overwrite=True)
    assert target.read_text().startswith("<?xml")
    with pytest.raises(ValueError, match="probs has shape"):
        timeline_svg(t, p[:, :2], LABELS, [])
