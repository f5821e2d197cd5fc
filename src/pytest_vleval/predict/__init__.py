"""Prediction: which cases to answer and in which order (``planning.py``), models loaded once (``pool.py``), answers
from the cache or generated in batches (``predictor.py``, ``generation.py``, ``cache.py``, ``fingerprints.py``),
and the progress bar (``progress.py``)."""
