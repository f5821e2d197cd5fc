"""``python -m pytest_vleval report RECORD.json ... -o report.html`` (see :mod:`pytest_vleval.report.cli`)."""

from __future__ import annotations

from pytest_vleval.report.cli import main

raise SystemExit(main())
