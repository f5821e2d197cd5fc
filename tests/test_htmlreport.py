"""Model-selection reports: the comparison table, the HTML report (--vl-report) and the report CLI."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest

from pytest_vleval.report.cli import main as cli_main
from pytest_vleval.report.cli import merge_records
from pytest_vleval.report.html import ReportInputs, json_for_script, render_report, word_diff
from pytest_vleval.report.table import build_table, plain_lines, short_names, text_lines

from .test_records import WEAK_BACKEND, make_golden_set, read_record

XSS_QUESTION = """say: <script>alert(1)</script>"><img src=x onerror=alert(1)>"""
XSS_EXPECTED = "</script><b>x</b>"
COLOUR = """
defaults: {scorer: exact, threshold: 1.0, max_new_tokens: 8}
cases:
  - {id: c1, image: ../images/red.png, question: 'say: red', expected: red}
  - {id: c2, image: ../images/red.png, question: 'hard say: red', expected: red}
  - {id: c3, image: ../images/blue.png, question: 'hard say: blue', expected: blue}
  - {id: xss, image: ../images/blue.png, question: 'XSS_QUESTION', expected: 'XSS_EXPECTED'}
""".replace("XSS_QUESTION", XSS_QUESTION).replace("XSS_EXPECTED", XSS_EXPECTED)
SHAPE = """
defaults: {max_new_tokens: 8}
cases:
  - {id: s1, image: ../images/red.png, question: 'say: a circle', expected: circle, scorer: contains}
  - id: s2
    images: [../images/red.png, ../images/blue.png]
    turns:
      - {question: 'say: two', expected: two}
      - {question: 'hard say: red', expected: red}
"""
# Tags the report is made of; anything else (iframe, object, link, base, form...) would be an injection.
REPORT_TAGS = {
    "html", "head", "meta", "title", "style", "body", "header", "h1", "h2", "h3", "dl", "dt", "dd", "main",
    "section", "article", "div", "span", "table", "thead", "tbody", "tr", "th", "td", "ul", "ol", "li", "p",
    "details", "summary", "figure", "figcaption", "img", "label", "select", "option", "input", "script", "q",
    "del", "ins", "br", "button", "noscript",
}  # fmt: skip


class ReportParser(HTMLParser):
    """Every tag and attribute of a report, to prove what it contains and what it cannot do."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.tags: list[tuple[str, dict[str, str | None]]] = []
        self.script_text: list[str] = []
        self._in_script = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, dict(attrs)))
        self._in_script = tag == "script"

    def handle_endtag(self, tag: str) -> None:
        self._in_script = False

    def handle_data(self, data: str) -> None:
        if self._in_script:
            self.script_text.append(data)


def parse_report(text: str) -> ReportParser:
    parser = ReportParser()
    parser.feed(text)
    parser.close()
    return parser


def assert_inert_and_self_contained(text: str) -> ReportParser:
    """No element but the report's own, no event handler, our script and inert JSON blocks only, nothing fetched."""
    parser = parse_report(text)
    assert {tag for tag, _ in parser.tags} <= REPORT_TAGS
    handlers = [(tag, name) for tag, attrs in parser.tags for name in attrs if name.lower().startswith("on")]
    assert handlers == []
    scripts = [attrs for tag, attrs in parser.tags if tag == "script"]
    data_blocks = [{"type": "application/json", "id": "vl-cases"}] if 'id="vl-cases"' in text else []
    assert scripts == [*data_blocks, {"type": "application/json", "id": "vl-summary"}, {}]
    for tag, attrs in parser.tags:
        for name in ("src", "href", "action", "srcset", "poster", "data"):
            value = attrs.get(name)
            if value is not None:
                assert tag == "img" and name == "src" and value.startswith("data:image/"), (tag, name, value[:60])
    assert not re.search(r"https?://", re.sub(r"data:image/[a-z+]+;base64,[A-Za-z0-9+/=]+", "", text))
    assert "url(" not in text.split("<style>", 1)[1].split("</style>", 1)[0]
    policy = next(
        a["content"] for t, a in parser.tags if t == "meta" and a.get("http-equiv") == "Content-Security-Policy"
    )
    assert (
        "default-src 'none'" in policy
        and "img-src data:" in policy
        and "unsafe-inline" not in policy.split("script-src")[1]
    )
    return parser


def cases_data(text: str) -> dict[str, Any]:
    """The report's cases: the JSON block its script shows a page at a time."""
    data: dict[str, Any] = json.loads(text.split('id="vl-cases">', 1)[1].split("</script>", 1)[0])
    return data


def case_rows(text: str) -> list[dict[str, Any]]:
    return [row for card in cases_data(text)["cards"] for row in card["rows"]]


def run_cli(cwd: Path, *args: str) -> str:
    """``python -m pytest_vleval ...`` in a fresh process (reports are rendered outside the test process, whose
    memory other tests measure)."""
    result = subprocess.run(
        [sys.executable, "-m", "pytest_vleval", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    return result.stdout


@pytest.fixture
def two_model_project(fake_project: pytest.Pytester) -> pytest.Pytester:
    """The fake project with a weak model ('wrong' to 'hard' questions) and a hostile case."""
    conftest = fake_project.path / "conftest.py"
    conftest.write_text(conftest.read_text() + WEAK_BACKEND)
    cases = fake_project.path / "test_cases"
    cases.mkdir()
    (cases / "test_colour.yaml").write_text(COLOUR)
    (cases / "test_shape.yaml").write_text(SHAPE)
    return fake_project


def test_two_models_end_with_the_comparison_table_and_write_the_report(two_model_project: pytest.Pytester) -> None:
    result = two_model_project.runpytest_subprocess(
        "test_cases",
        "--vl-model=fake",
        "--vl-model=weak",
        "--vl-report=out/report.html",
        "--vl-gpu-cost-per-hour=2.5",
        "--vl-json=run.json",
    )
    result.assert_outcomes(passed=7, failed=5)  # xss fails on both; weak fails c2, c3 and s2's second turn
    result.stdout.fnmatch_lines(
        [
            "*= vleval model comparison =*",
            "*| all*| dialogue*| colour*| shape*",
            "model |   pass   score | turns held |   pass   score |    pass   score",
            "fake  | 83.3%[*]  0.833[*] |     2.000[*] | 75.0%[*]  0.750[*] | 100.0%[*]  1.000[*]",
            "weak  | 33.3%   0.417  |     1.000  | 25.0%   0.250  |  50.0%   0.750 ",
            "",  # 80 columns: the rest wraps into a second block
            "model |    p50     p95 | peak mem       cases/h   $/1k req",
            "  [*] best of the column",
            "*$/1k req: $2.5 per GPU hour / cases per hour x 1000*",
            "vleval report written: out/report.html",
        ]
    )
    # The comparison ends the summary: nothing of ours after it but the report line.
    summary = result.stdout.str().split("vleval model comparison", 1)[1].split("short test summary")[0]
    assert "vleval summary" not in summary and "vleval regression" not in summary

    text = (two_model_project.path / "out" / "report.html").read_text(encoding="utf-8")
    parser = assert_inert_and_self_contained(text)
    assert "<script>alert" not in text and "</script><b>" not in text
    data = cases_data(text)
    (xss,) = [card for card in data["cards"] if card["case_id"] == "xss"]
    assert (
        xss["turns"][0][0] == XSS_QUESTION and XSS_EXPECTED in xss["turns"][0][1]
    )  # shown as text: test_report_browser
    assert [c["suite"] for c in data["cards"]] == ["test_cases/test_colour.yaml"] * 4 + [
        "test_cases/test_shape.yaml"
    ] * 2
    rows = case_rows(text)
    assert len(rows) == 12 and {r["model"] for r in rows} == {"fake", "weak"}
    assert sum(r["status"] == "passed" for r in rows) == 7
    assert sum(len(c["images"]) for c in data["cards"]) == 7  # thumbnails named by index, each image made once
    assert len(data["images"]) == 2 and all(i["uri"].startswith("data:image/jpeg;base64,") for i in data["images"])
    assert data["per_page"] == 100
    plots = [a["alt"] for t, a in parser.tags if t == "img" and a.get("class") == "plot"]
    assert plots == ["Score per case file and model", "Latency distribution"]
    summary_json = json.loads(text.split('id="vl-summary">', 1)[1].split("</script>", 1)[0])
    assert summary_json["models"] == ["fake", "weak"]
    names = [c["name"] for c in summary_json["columns"]]
    assert names[:2] == ["pass", "score"] and names[-3:] == ["peak mem", "cases/h", "$/1k req"]

    record = read_record(two_model_project.path / "run.json")
    assert record["run"]["options"]["gpu_cost_per_hour"] == 2.5
    cases_per_hour = [m["metrics"]["cases_per_s"] * 3600 for m in record["models"]]
    assert summary_json["values"][0][-1] == pytest.approx(2.5 / cases_per_hour[0] * 1000)


def test_the_cli_rebuilds_report_and_table_from_the_record(two_model_project: pytest.Pytester) -> None:
    result = two_model_project.runpytest(
        "test_cases", "--vl-model=fake", "--vl-model=weak", "--vl-json=run.json", "--vl-gpu-cost-per-hour=2.5"
    )
    table = result.stdout.str().split("vleval model comparison =", 1)[1].split("\n", 1)[1].split("\n=")[0]
    stdout = run_cli(two_model_project.path, "report", "run.json", "-o", "rebuilt.html", "--width=80")
    rows = [line for line in stdout.splitlines() if line.startswith(("fake ", "weak "))]
    assert len(rows) == 4 and all(row.rstrip() in table for row in rows)  # the same table, the cost kept
    assert "$/1k req" in stdout and stdout.rstrip().endswith("report written: rebuilt.html")
    text = (two_model_project.path / "rebuilt.html").read_text(encoding="utf-8")
    assert_inert_and_self_contained(text)
    data = cases_data(text)
    assert sum(len(c["images"]) for c in data["cards"]) == 7 and all(i["uri"] for i in data["images"])
    assert len(case_rows(text)) == 12
    assert "run.json" in text  # the source is named

    # Run from elsewhere: images are found through the record's rootdir.
    elsewhere = two_model_project.path / "elsewhere"
    elsewhere.mkdir()
    run_cli(elsewhere, "report", str(two_model_project.path / "run.json"), "-o", "r.html")
    assert (elsewhere / "r.html").read_text(encoding="utf-8").count("data:image/jpeg") == 2  # each image once


def test_cli_errors_name_the_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "bench.json"
    bad.write_text(json.dumps({"benchmarks": [], "machine_info": {}}))
    assert cli_main(["report", str(bad)]) == 2
    assert "is a pytest-benchmark file" in capsys.readouterr().err
    assert cli_main(["report", str(tmp_path / "missing.json")]) == 2
    assert "missing.json: no such file" in capsys.readouterr().err


def test_models_load_one_after_the_other_and_are_closed(pytester: pytest.Pytester) -> None:
    pytester.makeconftest(
        """
        from pathlib import Path

        LOG = Path(__file__).with_name("events.log")

        class LogBackend:
            def __init__(self, spec):
                self.spec = spec
                self.info = {"device": "cpu"}
                self.log("load")

            def log(self, what):
                with LOG.open("a") as handle:
                    handle.write(f"{what} {self.spec.label}\\n")

            def generate(self, conversations):
                self.log("generate")
                return [c.question.split("say:", 1)[1].strip() for c in conversations]

            def close(self):
                self.log("close")

        def pytest_vleval_load_model(config, spec, options):
            return LogBackend(spec)
        """
    )
    from .conftest import make_png

    make_png(pytester.path / "red.png")
    for name in ("a", "b"):
        pytester.makefile(
            ".yaml",
            **{
                f"test_{name}": "cases:\n"
                + "".join(f"  - {{id: q{i}, image: red.png, question: 'say: x', expected: x}}\n" for i in range(3))
            },
        )
    pytester.runpytest("--vl-model=m1", "--vl-model=m2", "--vl-batch-size=2").assert_outcomes(passed=12)
    events = (pytester.path / "events.log").read_text().split("\n")
    collapsed = [e for n, e in enumerate(events) if e and (n == 0 or e != events[n - 1])]
    # Never two resident: m1 is closed before m2 loads, and m2 is closed at the end of the session.
    assert collapsed == ["load m1", "generate m1", "close m1", "load m2", "generate m2", "close m2"]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--vl-report=report.txt"], "--vl-report='report.txt': expected the path of an .html file"),
        (["--vl-report", "test_cases/"], "--vl-report='test_cases/': expected the path of an .html file (an argument"),
        (["--vl-gpu-cost-per-hour=abc"], "--vl-gpu-cost-per-hour='abc': expected a positive price in USD per hour"),
        (["--vl-gpu-cost-per-hour=-1"], "expected a positive price"),
    ],
)
def test_bad_report_options_are_usage_errors(pytester: pytest.Pytester, args: list[str], message: str) -> None:
    result = pytester.runpytest(*args)
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    assert message in result.stderr.str()


def test_help_lists_the_report_options(pytester: pytest.Pytester) -> None:
    result = pytester.runpytest("--help")
    result.stdout.fnmatch_lines(["*--vl-report=PATH.html*", "*--vl-gpu-cost-per-hour=USD*", "*vl_gpu_cost_per_hour*"])


def test_single_model_writes_the_report_without_a_table(two_model_project: pytest.Pytester) -> None:
    two_model_project.makeini("[pytest]\nvl_report = reports/r.html\nvl_gpu_cost_per_hour = 1.5\n")
    result = two_model_project.runpytest_subprocess("test_cases", "--vl-model=fake")
    result.assert_outcomes(passed=5, failed=1)
    assert "vleval model comparison" not in result.stdout.str()
    result.stdout.fnmatch_lines(["*= vleval report =*", "vleval report written: reports/r.html"])
    text = (two_model_project.path / "reports" / "r.html").read_text(encoding="utf-8")
    assert "$/1k req" in text and 'class="num best"' not in text  # one model: nothing to beat


def test_per_case_diffs_and_history_against_saved_runs(two_model_project: pytest.Pytester) -> None:
    two_model_project.runpytest("test_cases", "--vl-model=weak", "--vl-save=before")
    result = two_model_project.runpytest_subprocess(
        "test_cases", "--vl-model=fake", "--vl-compare=before", "--vl-save=after", "--vl-report=r.html"
    )
    result.assert_outcomes(passed=5, failed=1)
    text = (two_model_project.path / "r.html").read_text(encoding="utf-8")
    parser = assert_inert_and_self_contained(text)
    rows = case_rows(text)
    assert {r["diff"] for r in rows} == {"fixed", "same"}
    assert sum(r["diff"] == "fixed" for r in rows) == 3
    assert ["-", "wrong"] in rows[1]["before"]["shown"] and ["+", "red"] in rows[1]["before"]["shown"]  # c2's diff
    assert 'value="regressed"' in text and 'value="changed"' in text
    assert "Compared with" in text and "3 fixed" in text
    plots = [a["alt"] for t, a in parser.tags if t == "img" and a.get("class") == "plot"]
    assert "metric history" in plots  # the two saved runs
    assert "0001_before" in text and "0002_after" in text

    # The record alone (no baseline file) still marks the flips.
    storage = next((two_model_project.path / ".vleval" / "runs").iterdir())
    run_cli(two_model_project.path, "report", str(storage / "0002_after.json"), "-o", "cli.html")
    rebuilt = (two_model_project.path / "cli.html").read_text(encoding="utf-8")
    assert sum(r["diff"] == "fixed" for r in case_rows(rebuilt)) == 3
    # And with --compare and --storage, the CLI gives what the run gave.
    run_cli(
        two_model_project.path, "report", str(storage / "0002_after.json"), "--compare",
        str(storage / "0001_before.json"), "--storage", str(storage.parent), "-o", "cli2.html",
    )  # fmt: skip
    again = (two_model_project.path / "cli2.html").read_text(encoding="utf-8")
    assert case_rows(again)[1]["before"] == rows[1]["before"] and 'alt="metric history"' in again
    # An interrupted run saved by name is no point of the history: its missing cases are not a drop.
    broken = json.loads((storage / "0001_before.json").read_text(encoding="utf-8"))
    broken["run"].update(complete=False, incomplete_reason="interrupted")
    (storage / "0003_broken.json").write_text(json.dumps(broken), encoding="utf-8")
    run_cli(
        two_model_project.path, "report", str(storage / "0002_after.json"), "--storage", str(storage.parent),
        "-o", "cli3.html",
    )  # fmt: skip
    assert "0003_broken" not in (two_model_project.path / "cli3.html").read_text(encoding="utf-8")
    rerun = two_model_project.runpytest("test_cases", "--vl-model=fake", "--vl-report=r2.html")
    rerun.assert_outcomes(passed=5, failed=1)
    assert "0003_broken" not in (two_model_project.path / "r2.html").read_text(encoding="utf-8")


def test_golden_sets_are_in_the_record_and_the_report(fake_project: pytest.Pytester) -> None:
    make_golden_set(fake_project, {1: "a red circle", 2: "a <b>blue</b> square"})
    result = fake_project.runpytest_subprocess("golden", "--vl-model=fake", "--vl-json=run.json", "--vl-report=r.html")
    result.assert_outcomes(passed=1)
    (golden,) = read_record(fake_project.path / "run.json")["golden"]
    assert golden["prompt"] == "Describe the image."
    assert golden["images"]["1"]["path"] == "golden/shapes/images/001.png"
    assert golden["images"]["1"]["references"][0]
    text = (fake_project.path / "r.html").read_text(encoding="utf-8")
    parser = assert_inert_and_self_contained(text)
    assert "a &lt;b&gt;blue&lt;/b&gt; square" in text and "Describe the image." in text
    assert sum(1 for t, a in parser.tags if t == "img" and a.get("class") == "thumb") == 2

    # The record is enough: the manifest and references gone, the report still shows them.
    (fake_project.path / "golden" / "shapes" / "captions.json").unlink()
    run_cli(fake_project.path, "report", "run.json", "-o", "cli.html")
    rebuilt = (fake_project.path / "cli.html").read_text(encoding="utf-8")
    assert golden["images"]["1"]["references"][0] in rebuilt and rebuilt.count("data:image/jpeg") == 2


def test_report_under_xdist(two_model_project: pytest.Pytester) -> None:
    result = two_model_project.runpytest_subprocess(
        "test_cases", "-n", "2", "--vl-model=fake", "--vl-model=weak", "--vl-report=r.html"
    )
    result.assert_outcomes(passed=7, failed=5)
    result.stdout.fnmatch_lines(["*= vleval model comparison =*", "fake *| 83.3%[*]  0.833[*] |*"])
    text = (two_model_project.path / "r.html").read_text(encoding="utf-8")
    assert sum(r["status"] == "passed" for r in case_rows(text)) == 7


def _record(
    models: list[dict[str, Any]], cases: list[dict[str, Any]] = (), golden: list[dict[str, Any]] = ()
) -> dict[str, Any]:  # type: ignore[assignment]
    return {
        "schema": "pytest-vleval/run",
        "schema_version": 1,
        "run": {"rootdir": "/nowhere"},
        "models": models,
        "cases": list(cases),
        "benchmarks": [],
        "golden": list(golden),
        "comparison": None,
    }


def test_table_marks_the_best_value_per_column_in_its_direction() -> None:
    record = _record(
        [
            {"label": "small", "eval": {"cases": 10}, "suites": {"t/test_a.yaml": {}},
             "metrics": {"accuracy": 0.6, "mean_score": 0.7, "accuracy@t/test_a.yaml": 0.6, "latency_p50": 0.2,
                         "latency_p95": 0.3, "tokens_per_s": 50.0, "memory_peak": 2**30, "cases_per_s": 2.0}},
            {"label": "big", "eval": {"cases": 10}, "suites": {"t/test_a.yaml": {}},
             "metrics": {"accuracy": 0.9, "mean_score": 0.7, "accuracy@t/test_a.yaml": 0.9, "latency_p50": 0.8,
                         "latency_p95": 0.9, "tokens_per_s": 20.0, "memory_peak": 4 * 2**30, "cases_per_s": 0.5}},
        ]
    )  # fmt: skip
    table = build_table(record, cost_per_hour=3.6)
    columns = {(c.group, c.name): i for i, c in enumerate(table.columns)}
    assert table.best(columns[("all", "pass")]) == {1}
    assert table.best(columns[("all", "score")]) == set()  # a tie marks nobody
    assert table.best(columns[("latency", "p50")]) == {0} and table.best(columns[("", "peak mem")]) == {0}
    assert table.best(columns[("", "tok/s")]) == {0} and table.best(columns[("", "$/1k req")]) == {0}
    # 3.6 USD/h at 2 cases/s (7,200 cases/h): 0.5 USD per 1,000 requests.
    assert [row[columns[("", "$/1k req")]] for row in table.values] == pytest.approx([0.5, 2.0])
    assert ("a", "score") not in columns  # a suite's missing numbers make no column
    lines = plain_lines(table, width=200)
    assert lines[3].startswith("small | 60.0%   0.700  | 60.0%  | 200.0 ms*  300.0 ms* | 50.0*  1.00 GiB*   7,200*")
    assert lines[3].endswith("$0.500*") and lines[4].startswith("big   | 90.0%*  0.700  | 90.0%* | 800.0 ms ")
    # Narrow terminals wrap the columns into blocks that each start with the model column.
    narrow = plain_lines(table, width=60)
    assert sum(line.startswith("model ") for line in narrow) >= 2 and max(map(len, narrow[:-4])) <= 60
    best_cells = [seg for line in text_lines(table, 200) for seg in line if seg[1]]
    assert best_cells and all(
        text.endswith("*") and markup == {"green": True, "bold": True} for text, markup in best_cells
    )


def test_table_notes_only_the_columns_it_shows_and_why_a_cost_is_missing() -> None:
    """Every answer from the answer cache: no latency or throughput, so no such columns, no notes for them, and
    --vl-gpu-cost-per-hour says why it gave nothing instead of doing nothing."""
    record = _record(
        [{"label": "m", "eval": {"cases": 3}, "suites": {}, "metrics": {"accuracy": 1.0, "mean_score": 1.0}}]
    )
    table = build_table(record, cost_per_hour=2.5)
    assert [c.name for c in table.columns] == ["pass", "score"]
    assert not any(note.startswith(("latency:", "tok/s:")) for note in table.notes)
    assert [note for note in table.notes if note.startswith("$/1k req")] == [
        "$/1k req: not computed although --vl-gpu-cost-per-hour=2.5 was given: no answer was generated in this run "
        "(all came from the answer cache), so there is no throughput; --vl-refresh regenerates them"
    ]


def test_short_names_merge_and_word_diff() -> None:
    assert short_names(["a/test_colour.yaml", "b/test_shape.yml", "c/test_shape.yaml"]) == {
        "a/test_colour.yaml": "colour",
        "b/test_shape.yml": "b/test_shape.yml",
        "c/test_shape.yaml": "c/test_shape.yaml",
    }
    one = _record([{"label": "tiny"}], [{"model": "tiny", "suite": "s", "case_id": "c", "images": []}])
    two = _record(
        [{"label": "tiny"}, {"label": "other"}], [{"model": "tiny", "suite": "s", "case_id": "c", "images": []}]
    )
    merged = merge_records([("v1", one), ("v2", two)])
    assert [m["label"] for m in merged["models"]] == ["tiny (v1)", "tiny (v2)", "other"]
    assert [c["model"] for c in merged["cases"]] == ["tiny (v1)", "tiny (v2)"]
    assert word_diff("a red <b>", "a blue <b>") == "a <del>red</del><ins>blue</ins> &lt;b&gt;"


def test_hostile_text_everywhere_stays_text() -> None:
    evil = '</script><script>alert(1)</script>"><img src=x onerror=alert(1)><!--'
    record = _record(
        [{"label": evil, "source": evil, "eval": {"cases": 1}, "suites": {evil: {}}, "backend": {"architecture": evil},
          "load": {"error": evil}, "metrics": {"accuracy": 1.0, f"accuracy@{evil}": 1.0}}],
        [{"model": evil, "suite": evil, "case_id": evil, "line": 1, "passed": False, "score": 0.0, "error": evil,
          "outcome": "failed", "images": [evil],
          "turns": [{"question": evil, "expected": evil, "answer": evil, "scorer": evil, "score": 0.0,
                     "threshold": 1.0, "passed": False, "detail": evil}]}],
        [{"set": evil, "model": evil, "manifest": evil, "prompt": evil, "corpus": {"CIDEr": 0.1},
          "captions": {evil: evil}, "errors": {}, "per_image": {}, "gated": {},
          "images": {evil: {"path": evil, "references": [evil, evil]}}}],
    )  # fmt: skip
    record["run"] = {"name": evil, "args": [evil], "machine": {"cpu": evil}, "commit": {"id": evil, "branch": evil}}
    record["comparison"] = {"baseline": evil, "failures": [evil], "notes": [evil],
                            "models": [{"label": evil, "baseline_label": evil, "rows": [], "worse": [], "better": []}]}  # fmt: skip
    text = render_report(record, ReportInputs(title=evil, sources=[evil], plots=False))
    assert_inert_and_self_contained(text)
    assert "<script>alert" not in text and "<img src=x" not in text and "<!--" not in text
    assert json.loads(json_for_script({"k": evil})) == {"k": evil}
    assert not set("<>&") & set(json_for_script({"k": evil}))


def test_the_report_is_written_a_case_at_a_time_and_reads_as_one_document(tmp_path: Path) -> None:
    """write_report streams the cases' JSON block (a 200,000-case report is never whole in memory): the file is
    render_report's document, the block one JSON object with every card and each image's thumbnail once."""
    from pytest_vleval.report.html import report_pieces, write_report

    def case(n: int, model: str) -> dict[str, Any]:
        return {"model": model, "suite": "test_a.yaml", "case_id": f"c{n}", "line": n + 1, "passed": n % 3 != 0,
                "score": float(n % 3 != 0), "error": None, "outcome": "passed" if n % 3 else "failed",
                "images": [f"img{n % 2}.png"], "turns": [{"question": f"Q{n}?", "expected": "red", "answer": "Red.",
                "scorer": "contains", "score": 1.0, "threshold": 1.0, "passed": True, "detail": ""}]}  # fmt: skip

    models = [{"label": m, "source": m, "eval": {"cases": 250}, "metrics": {}} for m in ("a", "b")]
    record = _record(models, [case(n, m) for m in ("a", "b") for n in range(250)])
    inputs = ReportInputs(plots=False)
    pieces = list(report_pieces(record, inputs))
    assert len(pieces) > 250, "one piece a case card, not one string"
    written = write_report(tmp_path / "r.html", record, inputs).read_text(encoding="utf-8")
    assert written == "".join(pieces) == render_report(record, inputs)
    assert_inert_and_self_contained(written)
    data = cases_data(written)
    assert [card["case_id"] for card in data["cards"]] == [f"c{n}" for n in range(250)]
    assert [[row["model"] for row in card["rows"]] for card in data["cards"][:2]] == [["a", "b"], ["a", "b"]]
    assert len(data["images"]) == 2 and {i for card in data["cards"] for i in card["images"]} == {0, 1}
    assert (data["compared"], data["exact"], data["per_page"]) == (False, False, 100)


def test_importing_the_report_modules_loads_no_plotting_or_torch() -> None:
    code = (
        "import sys, pytest_vleval.plugin, pytest_vleval.records.outputs, pytest_vleval.report.table, pytest_vleval.report.cli, "
        "pytest_vleval.report.html, pytest_vleval.report.markdown, pytest_vleval.report.terminal\n"
        "print([m for m in ('pygal', 'matplotlib', 'torch', 'PIL.Image') if m in sys.modules])"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=False)
    assert result.stdout.strip() == "[]", result.stderr


def _plot_record() -> tuple[dict[str, Any], list[tuple[str, dict[str, Any]]]]:
    models = ["Qwen3-VL-8B", "模型-量化"]
    suites = ["test_cases/colour.yaml", "test_cases/中文/ocr.yaml"]
    record = {
        "models": [
            {
                "label": m,
                "eval": {"cases": 4, "accuracy": 0.5 + k / 4, "mean_score": 0.6},
                "suites": {s: {"accuracy": 0.25 * (n + 1), "mean_score": 0.5} for n, s in enumerate(suites)},
            }
            for k, m in enumerate(models)
        ],
        "cases": [{"model": m, "seconds": 0.01 * (n + 1 + 10 * k)} for k, m in enumerate(models) for n in range(20)],
        "benchmarks": [{"model": models[0], "samples": {"total_s": [0.2, 0.25, 0.3, None]}}],
    }
    history = [
        (
            f"000{r}_run",
            {
                "models": [
                    {
                        "label": m,
                        "fingerprint": "new" if r == 2 and k == 1 else "old",
                        "metrics": {"accuracy": 0.5 + r / 10, "latency_p50": None if r == 1 else 0.2},
                    }
                    for k, m in enumerate(models)
                ]
            },
        )
        for r in range(3)
    ]
    return record, history


def test_plots_are_inert_reproducible_svg_naming_their_panels_and_models() -> None:
    import xml.etree.ElementTree as ElementTree

    from pytest_vleval.report import plots

    record, history = _plot_record()
    drawn = {
        "scores": plots.suite_scores(record),
        "latency": plots.latency_distribution(record),
        "history": plots.history(history),
    }
    for name, svg in drawn.items():
        assert svg is not None, name
        text = svg.decode("utf-8")
        root = ElementTree.fromstring(text)  # one well-formed document
        assert root.tag == "{http://www.w3.org/2000/svg}svg"
        assert "<script" not in text and "<!--" not in text, name  # pygal's tooltip config and dated comments
        assert "Qwen3-VL-8B" in text and "模型-量化" in text, name  # the legend's text, not pixels
    assert drawn["scores"] == plots.suite_scores(record)  # no random chart ids: the same record, the same bytes
    scores = drawn["scores"].decode()
    assert "<title>pass rate</title>" in scores and "<title>mean score</title>" in scores and ">ocr<" in scores
    latency = drawn["latency"].decode()
    assert "<title>time per case (a batch's time / its size) (ms)</title>" in latency
    assert "<title>request latency (--vl-benchmark) (ms)</title>" in latency
    history_svg = drawn["history"].decode()
    # pass rate in all three runs, latency in two (the gap is skipped); the weights that changed: a ring a panel
    assert "<title>pass rate</title>" in history_svg and "<title>latency p50 (s, --vl-benchmark)</title>" in history_svg
    assert "<title>mean score</title>" not in history_svg  # never measured
    assert history_svg.count('style="fill: none; stroke-width: 2"') == 2


def test_plots_with_nothing_to_draw_are_left_out() -> None:
    from pytest_vleval.report import plots

    record, history = _plot_record()
    assert plots.history(history[:1]) is None  # one run: no history
    assert plots.suite_scores({"models": []}) is None
    bare = {"models": record["models"], "cases": [], "benchmarks": []}
    assert plots.latency_distribution(bare) is None
    cached = {**bare, "cases": [{"model": "Qwen3-VL-8B", "seconds": 0.0, "cached": True}]}
    assert plots.latency_distribution(cached) is None  # answers from the cache were not timed
