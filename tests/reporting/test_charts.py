"""The SVG charts as XML: hostile labels escaped, empty data, bar lengths proportional to the
values, negative and zero values, and a document that an XML parser accepts."""

from __future__ import annotations

import xml.etree.ElementTree as ET

import pytest

from archiver.reporting.charts import Series, horizontal_bars, number, stacked_bars

HOSTILE = [
    "<script>alert(1)</script>",
    "a \"quoted\" & 'single' label",
    "]]><!-- --><![CDATA[x]]>",
    "<svg onload=alert(1)>",
    "日本語 ümlaut 🙂",
]


def parse(svg: str) -> ET.Element:
    root = ET.fromstring(svg)
    assert root.tag == "svg"
    return root


def bars(root: ET.Element) -> list[ET.Element]:
    return [e for e in root.iter("rect") if e.get("class") == "bar"]


def texts(root: ET.Element) -> list[str]:
    return ["".join(e.itertext()) for e in root.iter() if e.tag in ("text", "title")]


@pytest.mark.parametrize("label", HOSTILE)
def test_hostile_labels_are_escaped_in_horizontal_bars(label: str) -> None:
    root = parse(horizontal_bars(label, label, [label], [5], label))
    assert not [e for e in root.iter() if e.tag not in {"svg", "text", "title", "rect"}]
    assert root.get("data-chart") == label and root.get("aria-label") == label
    [bar] = bars(root)
    assert bar.get("data-category") == label
    assert label in texts(root)  # the full label, as text, in its tooltip


@pytest.mark.parametrize("label", HOSTILE)
def test_hostile_labels_are_escaped_in_stacked_bars(label: str) -> None:
    series = [Series(label, [3, -2], "#000")]
    root = parse(stacked_bars("c", label, [label, "b"], series, label))
    assert not [e for e in root.iter() if e.tag not in {"svg", "text", "title", "rect", "line"}]
    assert {b.get("data-category") for b in bars(root)} == {label, "b"}
    assert {b.get("data-series") for b in bars(root)} == {label}
    assert label in texts(root)


def test_control_characters_in_a_label_keep_the_svg_valid_xml() -> None:
    root = parse(horizontal_bars("c", "t", ["bell\x07", "nul\x00"], [1, 2], "u"))
    assert {"bell\ufffd", "nul\ufffd"} <= set(texts(root))


def test_empty_data_is_a_valid_chart_without_bars() -> None:
    for svg in (horizontal_bars("c", "t", [], [], "u"), stacked_bars("c", "t", [], [], "u")):
        root = parse(svg)
        assert bars(root) == []
        assert float(root.get("height", "0")) > 0


def test_horizontal_bar_lengths_are_proportional_to_the_values() -> None:
    values = [400, 200, 100, 50]
    root = parse(horizontal_bars("c", "t", ["a", "b", "c", "d"], values, "u"))
    widths = [float(b.get("width", "0")) for b in bars(root)]
    for width, value in zip(widths, values, strict=True):
        assert width / widths[0] == pytest.approx(value / values[0], abs=0.002)
    assert [int(b.get("data-value", "0")) for b in bars(root)] == values


def test_stacked_segment_heights_are_proportional_to_the_values() -> None:
    series = [Series("x", [100, 40], "#111"), Series("y", [50, 10], "#222")]
    root = parse(stacked_bars("c", "t", ["p", "q"], series, "u"))
    heights = {
        (b.get("data-category"), b.get("data-series")): float(b.get("height", "0"))
        for b in bars(root)
    }
    unit = heights[("p", "x")] / 100
    for (category, name), height in heights.items():
        value = dict(zip(["p", "q"], next(s for s in series if s.name == name).values, strict=True))
        assert height == pytest.approx(value[category] * unit, abs=0.15)


def test_negative_values_go_below_zero_and_zero_draws_no_bar() -> None:
    series = [Series("up", [30, 0], "#111"), Series("down", [-10, 0], "#222")]
    root = parse(stacked_bars("c", "t", ["p", "q"], series, "u"))
    drawn = {b.get("data-series"): b for b in bars(root)}
    assert set(drawn) == {"up", "down"}  # the zeros in "q" draw nothing
    assert {b.get("data-category") for b in drawn.values()} == {"p"}
    zero_line = [e for e in root.iter("line") if e.get("stroke") == "#555"]
    zero = float(zero_line[-1].get("y1", "0"))
    up, down = drawn["up"], drawn["down"]
    assert float(up.get("y", "0")) + float(up.get("height", "0")) == pytest.approx(zero, abs=0.15)
    assert float(down.get("y", "0")) == pytest.approx(zero, abs=0.15)
    assert float(down.get("height", "0")) == pytest.approx(
        float(up.get("height", "0")) / 3, abs=0.15
    )


def test_horizontal_zero_and_negative_values_keep_a_positive_width() -> None:
    """A bar's width is never zero or negative (SVG would reject it): such a value is a hairline,
    its exact value in the label and ``data-value``."""
    root = parse(horizontal_bars("c", "t", ["a", "zero", "minus"], [10, 0, -5], "u"))
    widths = [float(b.get("width", "0")) for b in bars(root)]
    assert widths[0] > 1 and widths[1:] == [1.0, 1.0]
    assert [b.get("data-value") for b in bars(root)] == ["10", "0", "-5"]
    assert "-5" in texts(root)


def test_numbers_stay_exact_past_float_precision() -> None:
    big = 2**63 - 1
    root = parse(horizontal_bars("c", "t", ["a"], [big], "u"))
    assert bars(root)[0].get("data-value") == str(big)
    assert number(big) in texts(root)
