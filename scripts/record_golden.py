"""Record the golden output digests that `tests/test_golden_bytes.py` compares against.

The golden bundle (`tests/data/golden/bundle`, width 4, latent 64, 3 epochs on the embedded
subset) is committed, so these digests depend only on the runtime's code and its libraries. Run
this only on purpose, when a release is meant to change the output bytes, on a machine of each
CPU kind (`golden.cpu_kind`: their onnxruntime kernels round differently); it replaces the digests
of this machine's kind and keeps the others:

    python scripts/record_golden.py
"""

from __future__ import annotations

import json
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

from golden import CASES, GOLDEN_FILE, cpu_kind, run_case  # noqa: E402


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        digests = {name: run_case(name, Path(tmp) / name) for name in CASES}
    recorded = json.loads(GOLDEN_FILE.read_text()) if GOLDEN_FILE.exists() else {}
    kind = cpu_kind()
    recorded[kind] = digests
    GOLDEN_FILE.write_text(json.dumps(recorded, indent=1, sort_keys=True) + "\n")
    print(f"wrote the {kind} digests in {GOLDEN_FILE}")


if __name__ == "__main__":
    main()
