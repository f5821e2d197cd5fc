"""pytest-vleval: test vision-language models like code.

Importing this package must stay cheap: no torch, no transformers (see tests/test_imports.py).
"""

from __future__ import annotations

__version__ = "0.1.0"
