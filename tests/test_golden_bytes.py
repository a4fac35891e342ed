"""The same seed gives the same bytes as the recorded golden outputs (`tests/golden.py`).

The digests in `tests/data/golden/expected.json` were recorded by `scripts/record_golden.py` from
the committed golden bundle, once per CPU kind (AVX-512 and AVX2 machines round the decoder
differently); a change of structure must not change a single pixel. A release that
changes output bytes on purpose re-records them, bumps the version, and says so.
"""

from __future__ import annotations

import json

import pytest
from golden import CASES, GOLDEN_FILE, cpu_kind, run_case


@pytest.mark.parametrize("name", sorted(CASES))
def test_output_matches_the_recorded_golden_bytes(name, tmp_path):
    recorded, kind = json.loads(GOLDEN_FILE.read_text()), cpu_kind()
    if kind not in recorded:
        pytest.skip(f"no golden digests for CPU kind {kind}: record them with scripts/record_golden.py")
    assert run_case(name, tmp_path / "out") == recorded[kind][name]


def test_every_cpu_kind_records_every_case():
    recorded = json.loads(GOLDEN_FILE.read_text())
    assert {"avx2-fma", "avx512f"} <= set(recorded)
    for kind, digests in recorded.items():
        assert set(digests) == set(CASES), kind
