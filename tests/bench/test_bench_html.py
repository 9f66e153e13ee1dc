"""bench.html: self-contained, well-formed HTML5 with tables and SVG charts, opened in real headless
Chromium without console errors; the SVG bar charts on their own."""

from __future__ import annotations

import re
from html.parser import HTMLParser

from edgevit.bench.baseline import compare
from edgevit.bench.report_html import render
from edgevit.bench.svg import Bar, bar_chart
from tests.bench.bench_chromium import open_page
from tests.bench.bench_fixtures import changed, document

VOID = {"meta", "br", "hr", "img", "input", "link", "col", "area", "base", "source", "wbr"}
SVG_EMPTY_OK = {"rect", "line", "path", "circle"}  # SVG elements the charts close with "/>"


class Structure(HTMLParser):
    """Checks that every element is closed in order (void and self-closed SVG elements aside) and
    collects the tags and attributes."""

    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.stack, self.errors, self.tags, self.attrs, self.doctype = [], [], [], [], None

    def handle_decl(self, decl):
        self.doctype = decl

    def handle_starttag(self, tag, attrs):
        self.tags.append(tag)
        self.attrs += attrs
        if tag not in VOID:
            self.stack.append(tag)

    def handle_startendtag(self, tag, attrs):
        self.tags.append(tag)
        self.attrs += attrs

    def handle_endtag(self, tag):
        if not self.stack or self.stack[-1] != tag:
            self.errors.append(f"</{tag}> closes {self.stack[-1:] or 'nothing'}")
        else:
            self.stack.pop()


def report(tmp_path, doc=None):
    doc = doc or document()
    base = changed(doc, "tiny/int8/host/host", ("latency", "ms"), 0.1)
    doc = dict(doc, baseline=compare(doc["cells"], base, path="base.json"))
    path = tmp_path / "bench.html"
    path.write_text(render(doc), encoding="utf-8")
    return path, doc


def test_the_report_is_well_formed_self_contained_html5(tmp_path):
    path, _ = report(tmp_path)
    html = path.read_text()
    parser = Structure()
    parser.feed(html)
    parser.close()
    assert parser.doctype == "DOCTYPE html" and parser.errors == [] and parser.stack == []
    assert html.count("<html lang=\"en\">") == 1 and '<meta charset="utf-8">' in html and "<title>" in html
    assert "script" not in parser.tags and "link" not in parser.tags and "img" not in parser.tags
    external = [v for k, v in parser.attrs if k in ("src", "href") and v and not v.startswith("#")]
    assert external == [] and "@import" not in html and "url(http" not in html
    ids = [v for k, v in parser.attrs if k == "id"]
    assert len(ids) == len(set(ids)), "duplicate ids"


def test_estimates_are_labelled_and_user_text_is_escaped(tmp_path):
    html = report(tmp_path)[0].read_text()
    assert html.count('<span class="tag est">estimated</span>') >= 4  # 2 latencies + 2 per-kernel headings
    assert "87.8 ms est." in html and "0.123 ms</text>" in html
    assert "needs --port &lt;&amp;&gt; &quot;x&quot;" in html and "<&>" not in html


def test_headless_chromium_renders_it_without_console_errors(tmp_path):
    path, doc = report(tmp_path)
    page = open_page(path)
    assert page.console == [], page.console
    dom = page.dom
    assert dom.count("<table") >= 6  # run info, results, 3 step tables, regressions, not run
    # charts: latency, memory (ram, sram, flash), accuracy, per-kernel for each of the 3 ok cells
    assert len(re.findall(r"<svg[^>]*class=\"chart\"", dom)) == 1 + 3 + 1 + 3
    assert len(re.findall(r"<rect ", dom)) > 20
    for heading in ("Latency", "Memory", "Accuracy", "Per-kernel time", "Baseline comparison", "Cells not run"):
        assert f"<h2>{heading}</h2>" in dom
    assert "Regressions (1)" in dom and "tiny/int8/host/host" in dom
    assert all(c["key"] in dom for c in doc["cells"])


def test_the_console_check_sees_errors_when_there_are_some(tmp_path):
    """The control for the test above: a page that logs an error and throws is caught."""
    path = tmp_path / "bad.html"
    path.write_text("<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>bad</title></head><body>"
                    "<script>console.error('boom'); missingFunction();</script></body></html>")
    page = open_page(path)
    assert any("boom" in m for m in page.console) and any("missingFunction" in m for m in page.console)


def test_bar_chart_scales_labels_and_missing_values():
    linear = bar_chart("c1", [Bar("a", 10.0), Bar("b", 40.0)], "ms", "t")
    assert "log scale" not in linear and ">40.0 ms<" in linear and ">10.0 ms<" in linear
    log = bar_chart("c2", [Bar("host", 0.12), Bar("mcu", 1086.0, hatched=True)], "ms")
    assert "(log scale)" in log and 'url(#c2-h0)' in log and '<pattern id="c2-h0"' in log
    widths = [float(w) for w in re.findall(r'<rect x="[\d.]+" y="[\d.]+" width="([\d.]+)" height="14"', log)]
    assert len(widths) == 2 and widths[1] > 2 * widths[0]
    odd = bar_chart("c3", [Bar("<a&b>", None), Bar("x", 1.0, limit=2.0)], "B")
    assert "&lt;a&amp;b&gt;" in odd and "n/a" in odd and "budget 2.00 B" in odd
