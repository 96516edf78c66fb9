"""The README's Python example must run as written (it is what a newcomer copies first)."""

from __future__ import annotations

import re
from pathlib import Path

README = Path(__file__).resolve().parents[1] / "README.md"


def test_readme_python_example_runs():
    blocks = re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.S)
    assert blocks, "README has no Python example"
    namespace: dict = {}
    exec(compile(blocks[0], str(README), "exec"), namespace)
    patterns = namespace["patterns"]
    assert tuple(patterns.shape) == (21, 64, 64)
    assert float(patterns.min()) >= 0 and float(patterns.sum()) > 0
