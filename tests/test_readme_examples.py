"""The README's runnable Python examples, run as a user would paste them.

A block is runnable when it starts with an import from ``deepsmote.data`` (the embedded dataset);
``fmnist.bundle`` in it names the committed golden bundle here.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
GOLDEN_BUNDLE = ROOT / "tests" / "data" / "golden" / "bundle"
BLOCKS = [
    b
    for b in re.findall(r"```python\n(.*?)```", (ROOT / "README.md").read_text(), re.S)
    if b.startswith("from deepsmote.data import")
]


def test_the_readme_has_runnable_examples():
    assert len(BLOCKS) >= 1


@pytest.mark.parametrize("block", BLOCKS, ids=lambda b: b.splitlines()[1][:40])
def test_readme_example_runs(block, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    code = block.replace('"fmnist.bundle"', repr(str(GOLDEN_BUNDLE)))
    exec(compile(code, "README.md", "exec"), {"__name__": "__readme__"})
