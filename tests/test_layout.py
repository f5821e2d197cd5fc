"""The package layout: public import paths stay (small re-export modules over the stage folders), every module
reads as one stage, and the plugin entry point, hooks and ``python -m`` commands are where users find them."""

from __future__ import annotations

import ast
import importlib
import importlib.metadata
import subprocess
import sys
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "src" / "pytest_vleval"

# public path -> (implementation module, names that must be the very same objects)
FACADES = {
    "pytest_vleval.scoring": (
        "pytest_vleval.scoring.registry",
        ["SCORERS", "get_scorer", "score", "validate_reference"],
    ),
    "pytest_vleval.metrics": (
        "pytest_vleval.scoring.captions",
        ["METRICS", "CaptionEvaluator", "caption_scores", "evaluate_captions", "MetricSkippedWarning"],
    ),
    "pytest_vleval.models": (
        "pytest_vleval.backends.base",
        ["Backend", "Conversation", "GenerationFailure", "ModelSpec", "UnsupportedConversation", "ModelLoadError"],
    ),
    "pytest_vleval.golden": ("pytest_vleval.cases.golden", ["GoldenSet", "GoldenSetError", "load_golden_set"]),
    "pytest_vleval.scenes": ("pytest_vleval.builtin.scenes", ["make_example", "render_shapes", "TASKS", "Scene"]),
    "pytest_vleval.devices": ("pytest_vleval.backends.devices", ["worker_device", "process_device"]),
}
# Modules directly in the package: the facades above, the wiring, and the shared session and options.
TOP_LEVEL = {
    "__init__.py",
    "__main__.py",
    "plugin.py",
    "hookspec.py",
    "session.py",
    "metrics.py",
    "models.py",
    "golden.py",
    "scenes.py",
    "devices.py",
}
STAGES = {"cases", "predict", "scoring", "records", "gate", "report", "bench", "backends", "builtin", "options"}
MAX_MODULE_LINES = 400


@pytest.mark.parametrize("public", sorted(FACADES))
def test_public_paths_re_export_the_implementation(public: str) -> None:
    implementation, names = FACADES[public]
    facade, real = importlib.import_module(public), importlib.import_module(implementation)
    for name in names:
        assert getattr(facade, name) is getattr(real, name), f"{public}.{name}"
    assert set(getattr(facade, "__all__", [])) <= set(dir(facade))


def test_older_names_still_import_from_their_public_paths() -> None:
    from pytest_vleval.metrics import ptb_tokenize, run_spice, spice_setup  # noqa: F401
    from pytest_vleval.models import ALIASES, BUILTIN_DIR, resolve_model, resolve_models  # noqa: F401
    from pytest_vleval.scoring import (  # noqa: F401
        BOX_CONVENTIONS,
        ScoreContext,
        ScoreResult,
        anls,
        box_iou,
        normalize_vqa_answer,
        parse_box,
        relaxed_accuracy,
        strip_thinking,
        vqa_accuracy,
    )

    assert resolve_model("tiny").path == BUILTIN_DIR / "tiny"


def test_the_entry_point_the_hooks_and_the_commands() -> None:
    (entry,) = [e for e in importlib.metadata.entry_points(group="pytest11") if e.name == "vleval"]
    assert entry.value == "pytest_vleval.plugin"
    hookspec = importlib.import_module("pytest_vleval.hookspec")
    assert callable(hookspec.pytest_vleval_load_model) and callable(hookspec.pytest_vleval_update_record)
    for command in (
        ["-m", "pytest_vleval", "report", "--help"],
        ["-m", "pytest_vleval.builtin.train", "--help"],
        ["-m", "pytest_vleval.builtin.make_suite", "--help"],
    ):
        result = subprocess.run([sys.executable, *command], capture_output=True, text=True, timeout=120)
        assert result.returncode == 0, (command, result.stderr[-2000:])
        assert "usage:" in result.stdout


def test_the_package_reads_as_the_data_flow() -> None:
    top = {p.name for p in PACKAGE.iterdir() if p.suffix == ".py"}
    assert top == TOP_LEVEL, f"flat modules outside the stage folders: {sorted(top - TOP_LEVEL)}"
    folders = {p.name for p in PACKAGE.iterdir() if p.is_dir() and (p / "__init__.py").is_file()}
    assert folders == STAGES
    too_long = {}
    for path in PACKAGE.rglob("*.py"):
        lines = len(path.read_text(encoding="utf-8").splitlines())
        if lines > MAX_MODULE_LINES:
            too_long[str(path.relative_to(PACKAGE))] = lines
    assert not too_long, f"modules over {MAX_MODULE_LINES} lines: {too_long}"


def test_facades_hold_no_code_of_their_own() -> None:
    for name in ("metrics.py", "models.py", "golden.py", "scenes.py", "devices.py"):
        tree = ast.parse((PACKAGE / name).read_text(encoding="utf-8"))
        kinds = {type(node).__name__ for node in tree.body}
        assert kinds <= {"Expr", "ImportFrom", "Assign"}, (name, kinds)
