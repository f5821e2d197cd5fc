"""``python -m pytest_vleval report RECORD.json ... -o report.html`` (see :mod:`pytest_vleval.report.cli`) and
``python -m pytest_vleval import FORMAT --KEY VALUE ... -o OUT.yaml`` (see :mod:`pytest_vleval.cases.importer`)."""

from __future__ import annotations

import sys

if sys.argv[1:2] == ["import"]:
    from pytest_vleval.cases.importer import main as import_main

    raise SystemExit(import_main(sys.argv[2:]))

from pytest_vleval.report.cli import main

raise SystemExit(main())
