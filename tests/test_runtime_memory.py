"""The streaming commands fix glibc's mmap threshold, so that freed batches leave the process."""

from __future__ import annotations

import subprocess
import sys

import pytest
from deepsmote.data import fmnist_mini
from deepsmote.runtime.commands import encode, generate, grid
from golden import GOLDEN_BUNDLE
from helpers import run_main

# Frees a 16 MiB block (which raises glibc's dynamic threshold to 16 MiB), then makes twenty
# 2 MiB blocks and frees all but the last, which holds the heap's top: prints the MiB still resident.
HELD_AFTER_FREE = """
import sys
import numpy as np
from deepsmote.runtime.memory import fix_mmap_threshold

def rss_mib():
    with open("/proc/self/status") as status:
        return next(int(line.split()[1]) for line in status if line.startswith("VmRSS")) >> 10

if sys.argv[1] == "fixed" and not fix_mmap_threshold():
    sys.exit("not glibc")
np.ones(16 << 20, np.uint8).sum()
base = rss_mib()
blocks = [np.ones(2 << 20, np.uint8) for _ in range(20)]
last = blocks.pop()
del blocks
print(rss_mib() - base)
"""


def held_after_free(mode: str) -> int:
    # In a fresh process: the setting is the process's, and this one's allocator is left alone.
    result = subprocess.run([sys.executable, "-c", HELD_AFTER_FREE, mode], capture_output=True, text=True, timeout=60)
    if "not glibc" in result.stderr:
        pytest.skip("the C library is not glibc: its allocator is left as it is")
    assert result.returncode == 0, result.stderr
    return int(result.stdout)


def test_a_fixed_threshold_hands_freed_blocks_back():
    # The default keeps the nineteen freed blocks (38 MiB) resident; the fixed threshold unmaps them.
    assert held_after_free("fixed") <= 8
    assert held_after_free("default") >= 30


@pytest.mark.parametrize("module", [generate, encode, grid], ids=["generate", "encode", "grid"])
def test_the_streaming_commands_fix_the_threshold(module, monkeypatch, tmp_path, capsys):
    calls = []
    monkeypatch.setattr(module, "fix_mmap_threshold", lambda: calls.append(1) or True)
    name = module.__name__.rsplit(".", 1)[1]
    out = tmp_path / ("grid.png" if name == "grid" else "out")
    extra = ["--strategy", "minority", "--quiet"] if name == "generate" else []
    code, _, err = run_main([name, GOLDEN_BUNDLE, fmnist_mini(), "--out", out, *extra], capsys)
    assert code == 0, err
    assert calls == [1]
