"""``layerscope demo`` ends with one line per section and ``report: PATH``, not a wide table of rows."""

import json

from layerscope.cli import demo
from layerscope.results.report import Report
from tests.conftest import save_model_dir
from tests.helpers import run_cli


def test_summary_is_one_line_per_section_with_quoted_tokens():
    rows = [
        {"section": "logit_lens", "layer": 29, "top_token": " Paris", "prob": 0.4312, "headline": "' Paris' (p 0.43)"},
        {"section": "logit_lens", "layer": 29, "top_token": " Rome", "prob": 0.2},
        {"section": "patching", "layer": 3, "position": 7, "token": " of", "value": 1.23456, "note": None},
        {"section": "attend_random", "layer": 10, "headline": "stable from 10", "caveat": "2 of 24 correct"},
    ]
    lines = demo.summary_lines(rows)
    assert len(lines) == 3
    assert lines[0].split() == ["logit_lens", "'", "Paris'", "(p", "0.43)"]
    assert lines[1].split(None, 1)[1] == "layer 3, position 7, token ' of', value 1.235"
    assert lines[2].endswith("stable from 10  [caveat: 2 of 24 correct]")


def test_demo_prints_the_summary_and_the_report_path(capsys, tmp_path, monkeypatch):
    def section(model, report, out_dir):
        report.section("A section")
        report.caveat("too small to mean anything")
        return [{"section": "fake", "layer": 1, "value": 0.5, "token": "\n"}]

    monkeypatch.setattr(demo, "sections", lambda: [("fake", section)])
    model_dir = save_model_dir("llama", tmp_path / "model")
    out = tmp_path / "report"
    code, stdout, _ = run_cli(capsys, "demo", "--model", model_dir, "--out-dir", str(out))
    html = (out / "index.html").read_text()
    assert code == 0 and stdout.splitlines() == [
        "fake  layer 1, value 0.500, token '\\n'",
        f"report: {(out / 'index.html').resolve()}",
    ]
    assert 'class="caveat"' in html and "too small to mean anything" in html
    code, stdout, _ = run_cli(capsys, "demo", "--model", model_dir, "--out-dir", str(out), "--json")
    assert code == 0 and json.loads(stdout)[0]["section"] == "fake"


def test_report_tables_scroll_instead_of_widening_the_page(tmp_path):
    import pandas as pd

    report = Report("t")
    report.table(pd.DataFrame({f"column {i}": [1.0] for i in range(40)}))
    assert '<div class="table">' in report.write(tmp_path / "r.html").read_text()


def test_report_tables_quote_tokens(tmp_path):
    import pandas as pd

    report = Report("t")
    report.table(pd.DataFrame({"layer": [0, 1], "top_token": [" ", " of"]}))
    html = report.write(tmp_path / "r.html").read_text()
    assert "<td>' '</td>" in html and "<td>' of'</td>" in html
