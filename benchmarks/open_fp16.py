"""Seconds a fresh process takes to open a bundle's models for fp16: a bundle as export writes it
since 0.9.0 (with ``decoder_fp16.onnx``) against the same bundle without that file, as exported
before, for which every `open_models` imports onnx and converts ``decoder.onnx``. Also what the
extra file costs `load_bundle`, which reads and hashes every graph of a bundle on every job.

    python benchmarks/open_fp16.py [--bundle DIR] [--runs 7]

On the CPU provider: onnx's import and the conversion are host work, done before a GPU's session
is built as before a CPU's, so the time saved is the same where a GPU runs the decoder (the
session's own build differs there and is not timed apart). Fresh processes, alternating between
the two bundles; medians and ranges of one run.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

from _common import paper_bundle
from deepsmote.runtime.bundle import FP16_DECODER_FILE, MANIFEST_NAME

CHILD = """
import json, sys, time
start = time.perf_counter()
from deepsmote.runtime.bundle import load_bundle, open_models
imported = time.perf_counter()
bundle = load_bundle(sys.argv[1])
loaded = time.perf_counter()
models = open_models(bundle, "cpu", precision="fp16", encoder=False)
opened = time.perf_counter()
print(json.dumps({"load_bundle": loaded - imported, "open_models": opened - loaded,
                  "decoder": models.decoder_file, "onnx imported": "onnx" in sys.modules}))
"""


def without_fp16_graph(bundle: Path, folder: Path) -> Path:
    """A copy of ``bundle`` as exported before 0.9.0: no decoder_fp16.onnx."""
    old = folder / "before-0.9.0"
    shutil.copytree(bundle, old)
    (old / FP16_DECODER_FILE).unlink()
    manifest = json.loads((old / MANIFEST_NAME).read_text())
    del manifest["files"][FP16_DECODER_FILE]
    (old / MANIFEST_NAME).write_text(json.dumps(manifest))
    return old


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--bundle", type=Path, help="a bundle with decoder_fp16.onnx; the paper-size one by default")
    parser.add_argument("--runs", type=int, default=7)
    args = parser.parse_args()
    bundle = args.bundle or paper_bundle()
    if not (bundle / FP16_DECODER_FILE).is_file():
        sys.exit(f"error: {bundle} has no {FP16_DECODER_FILE}; export it with deepsmote 0.9.0 or later")
    with tempfile.TemporaryDirectory() as folder:
        cases = {"with decoder_fp16.onnx": bundle, "without (before 0.9.0)": without_fp16_graph(bundle, Path(folder))}
        runs: dict[str, list[dict]] = {name: [] for name in cases}
        for _ in range(args.runs):
            for name, path in cases.items():
                child = subprocess.run(
                    [sys.executable, "-c", CHILD, str(path)], capture_output=True, text=True, check=True
                )
                runs[name].append(json.loads(child.stdout))
    print(f"{bundle}: {args.runs} fresh processes each, alternating, CPU provider, fp16")
    medians = {}
    for name, results in runs.items():
        line = [f"{name:24s}", f"decoder {results[0]['decoder']}, onnx imported: {results[0]['onnx imported']}"]
        for key in ("load_bundle", "open_models"):
            values = [r[key] for r in results]
            medians[name, key] = statistics.median(values)
            line.append(f"{key} median {medians[name, key]:.3f} s ({min(values):.3f}-{max(values):.3f})")
        print("  " + "; ".join(line))
    new, old = cases
    saved = sum(medians[old, key] - medians[new, key] for key in ("load_bundle", "open_models"))
    print(f"  saved per open: {saved:.3f} s (median load_bundle + open_models, before minus with)")


if __name__ == "__main__":
    main()
