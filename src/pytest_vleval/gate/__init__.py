"""The regression gate: a run's record against a baseline's (``compare.py``), under the ``--vl-compare-fail``
limits (``rules.py``, units in ``units.py``), with paired significance tests (``significance.py``); the
baseline is found by ``baseline.py``."""
