"""Backends: what answers a conversation.

- ``base.py``: :class:`~pytest_vleval.backends.base.Backend` (the protocol the predictor and the benchmarks use),
  the conversation and failure types;
- ``registry.py``: aliases and how a ``--vl-model`` value resolves; ``loader.py``: the built-in loader;
- ``hf.py`` (transformers, imported only when a model loads), ``openai.py`` + ``openai_api.py`` (served models);
- ``families.py`` (prompt formats, capabilities, box conventions), ``precision.py``, ``devices.py``.
"""
