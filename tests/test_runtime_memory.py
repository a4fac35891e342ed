"""What a streamed encoding frees leaves the process (glibc's heaps trimmed once it is done)."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
from deepsmote.data import fmnist_mini
from deepsmote.runtime import codes as codes_module
from deepsmote.runtime.bundle import load_bundle, open_models
from deepsmote.runtime.stream import open_dataset
from golden import GOLDEN_BUNDLE

# Frees a 16 MiB block (which raises glibc's mmap threshold to 16 MiB), then makes twenty 2 MiB
# blocks, now in the heap, and frees all but the last, which holds the heap's top: prints the MiB
# still resident, after release_free_memory() when asked.
HELD_AFTER_FREE = """
import sys
import numpy as np
from deepsmote.runtime.memory import release_free_memory

def rss_mib():
    with open("/proc/self/status") as status:
        return next(int(line.split()[1]) for line in status if line.startswith("VmRSS")) >> 10

np.ones(16 << 20, np.uint8).sum()
base = rss_mib()
blocks = [np.ones(2 << 20, np.uint8) for _ in range(20)]
last = blocks.pop()
del blocks
if sys.argv[1] == "release" and not release_free_memory():
    sys.exit("not glibc")
print(rss_mib() - base)
"""


def held_after_free(mode: str) -> int:
    # In a fresh process: a heap's history is the process's.
    result = subprocess.run([sys.executable, "-c", HELD_AFTER_FREE, mode], capture_output=True, text=True, timeout=60)
    if "not glibc" in result.stderr:
        pytest.skip("the C library is not glibc: there is nothing to trim")
    assert result.returncode == 0, result.stderr
    return int(result.stdout)


def test_released_memory_leaves_the_process():
    # Without the release the nineteen freed blocks (38 MiB) stay resident.
    assert held_after_free("release") <= 8
    assert held_after_free("keep") >= 30


def test_a_streamed_encoding_releases_what_it_freed(monkeypatch):
    calls = []
    monkeypatch.setattr(codes_module, "release_free_memory", lambda: calls.append(1) or True)
    models = open_models(load_bundle(GOLDEN_BUNDLE), "cpu", threads=1)
    codes_module.encode_stream(models, open_dataset(fmnist_mini()), np.ones(10, dtype=bool))
    assert calls == [1]
