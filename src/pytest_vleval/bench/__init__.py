"""Speed and memory: latency items through pytest-benchmark (``latency.py``, ``hooks.py``) and memory windows
over a process's peak counters (``memory.py``)."""
