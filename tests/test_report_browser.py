"""The HTML report in a real browser: headless Chromium (Debian's package) driven over the DevTools protocol.

Skipped where /usr/bin/chromium or websocket-client is missing (.ci/run installs both).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from .cdp import CHROMIUM
from .test_htmlreport import two_model_project  # noqa: F401  (fixture)

pytestmark = [
    pytest.mark.skipif(not os.access(CHROMIUM, os.X_OK), reason=f"{CHROMIUM} not installed (apt-get install chromium)"),
]


def visible(selector: str) -> str:
    """JS: how many elements match the selector and are rendered (not hidden by a filter)."""
    return f"Array.from(document.querySelectorAll({json.dumps(selector)})).filter(e => e.getClientRects().length > 0).length"


def test_report_renders_filters_and_stays_inert_in_chromium(
    two_model_project: pytest.Pytester,  # noqa: F811
    tmp_path: Path,
) -> None:
    pytest.importorskip("websocket", reason="websocket-client not installed (pip install websocket-client)")
    from .cdp import Chromium

    result = two_model_project.runpytest_subprocess(
        "test_cases", "--vl-model=fake", "--vl-model=weak", "--vl-report=report.html", "--vl-gpu-cost-per-hour=2"
    )
    result.assert_outcomes(passed=7, failed=5)
    report = two_model_project.path / "report.html"

    with Chromium() as browser:
        browser.open(report)
        # The comparison table and every image render.
        assert browser.evaluate(visible("table.compare tbody tr")) == 2
        assert browser.evaluate(visible("table.compare td.best")) > 0
        images = browser.evaluate(
            "Array.from(document.images).map(i => [i.className, i.complete && i.naturalWidth > 0])"
        )
        assert [c for c, _ in images].count("thumb") == 7 and [c for c, _ in images].count("plot") == 2
        assert all(ok for _, ok in images), images
        # The page's own script ran under its Content-Security-Policy (it fills the counter) ...
        assert browser.evaluate("document.getElementById('f-count').textContent") == "6 of 6 cases shown"
        # ... and nothing the answers carried did: no dialog, no extra script or handler, the payload is text.
        assert browser.evaluate("document.scripts.length") == 2
        assert browser.evaluate("document.querySelectorAll('[onerror], img:not([src^=\"data:\"])').length") == 0
        assert (
            browser.evaluate(
                "Array.from(document.querySelectorAll('.answer')).filter(e => e.textContent.includes("
                "'<script>alert(1)</script>\"><img src=x onerror=alert(1)>')).length"
            )
            == 2
        )
        assert browser.evaluate("JSON.parse(document.getElementById('vl-summary').textContent).models") == [
            "fake",
            "weak",
        ]

        shot = browser.screenshot(tmp_path / "report.png")
        print(f"report screenshot: {shot}")

        def choose(name: str, value: str) -> None:
            browser.evaluate(
                f"(function(){{var s=document.getElementById('f-{name}');s.value={json.dumps(value)};"
                "s.dispatchEvent(new Event('change'));})()"
            )

        assert browser.evaluate(visible("tr[data-model]")) == 12 + 2  # case rows + the comparison table's rows
        choose("model", "weak")
        assert browser.evaluate(visible("article.case tr[data-model='fake']")) == 0
        assert browser.evaluate(visible("article.case tr[data-model='weak']")) == 6
        choose("status", "failed")
        assert browser.evaluate(visible("article.case tr[data-model]")) == 4  # weak's c2, c3, xss, s2
        assert browser.evaluate(visible("article.case")) == 4
        choose("suite", "test_cases/test_shape.yaml")
        assert browser.evaluate(visible("article.case")) == 1
        assert browser.evaluate("document.getElementById('f-count').textContent") == "1 of 6 cases shown"
        choose("suite", "")
        choose("status", "")
        choose("model", "")
        browser.insert_text("#f-text", "onerror")  # typed, as a user would
        assert browser.evaluate(visible("article.case")) == 1
        assert browser.evaluate(visible("article.case tr[data-model]")) == 2
        browser.click("#f-model")  # a real click on a filter does not break the page
        assert browser.evaluate("document.activeElement.id") == "f-model"

        dialogs = [e for e in browser.events if e["method"] == "Page.javascriptDialogOpening"]
        assert dialogs == []
        violations = [e for e in browser.events if "Content Security Policy" in json.dumps(e.get("params", {}))]
        assert violations == []  # nothing tried to run or load
    assert shot.stat().st_size > 10_000
