"""Records: the one recorder every result reaches (``recorder.py``), the run record it builds (``schema.py``,
``aggregates.py``, ``run_info.py``), saved runs (``storage.py``) and the files written from it (``outputs.py``)."""
