"""Cases: YAML case files and golden caption-set manifests read by one loader (``yaml_loader.py``) into frozen
dataclasses (``casefile.py``, ``fields.py``, ``golden.py``), and the pytest items made from them (``items.py``,
``golden_items.py``)."""
