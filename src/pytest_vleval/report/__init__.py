"""Views of a run record: the terminal summary (``terminal.py``), the gate comparison as text (``comparison.py``),
the model comparison table (``table.py``), the HTML report (``html.py``, ``templates/``, ``plots.py``), the
Markdown summary (``markdown.py``) and ``python -m pytest_vleval report`` (``cli.py``). None of them computes
anything the record holds."""
