"""The same seed gives the same bytes as the recorded golden outputs (`tests/golden.py`).

The digests in `tests/data/golden/expected.json` were recorded by `scripts/record_golden.py` from
the committed golden bundle; a change of structure must not change a single pixel. A release that
changes output bytes on purpose re-records them, bumps the version, and says so.
"""

from __future__ import annotations

import json

import pytest
from golden import CASES, GOLDEN_FILE, run_case


@pytest.mark.parametrize("name", sorted(CASES))
def test_output_matches_the_recorded_golden_bytes(name, tmp_path):
    expected = json.loads(GOLDEN_FILE.read_text())
    assert run_case(name, tmp_path / "out") == expected[name]
