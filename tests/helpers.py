"""Helpers shared by the tests: bundles without optional graphs, and running the CLI."""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from deepsmote.runtime.bundle import MANIFEST_NAME
from deepsmote.runtime.cli import main


def without_graphs(bundle: Path, copy: Path, *names: str) -> Path:
    """A copy of ``bundle`` at ``copy`` without the optional graphs ``names``, as a bundle exported
    without them has it (an older export, or one made elsewhere)."""
    shutil.copytree(bundle, copy)
    manifest = json.loads((copy / MANIFEST_NAME).read_text())
    for name in names:
        (copy / name).unlink()
        del manifest["files"][name]
    (copy / MANIFEST_NAME).write_text(json.dumps(manifest))
    return copy


def flip_a_byte(file: Path, offset: int = -10) -> None:
    """Invert the byte of ``file`` at ``offset``, as a corrupted copy has it (its sha256 then differs)."""
    data = bytearray(file.read_bytes())
    data[offset] ^= 0xFF
    file.write_bytes(bytes(data))


def tree_digest(root: Path) -> dict[str, str]:
    """sha256 of every output file, ignoring the job's bookkeeping and timing summary."""
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file() and not p.name.startswith(".") and p.name != "summary.json"
    }


def run_main(args: list[object], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    """Exit code, stdout and stderr of `deepsmote ARGS` run in this process."""
    try:
        main([str(a) for a in args])
        code = 0
    except SystemExit as exit_:
        code = exit_.code
    out, err = capsys.readouterr()
    return code, out, err


def run_cli(
    *args: str, check: bool = True, prelude: str = "", env: dict[str, str] | None = None
) -> subprocess.CompletedProcess:
    """`deepsmote ARGS` in a fresh interpreter, after ``prelude`` (e.g. hiding a module).

    A fresh process, through the installed command's entry point, is where signals, exit codes and
    imports behave as for a user. With ``check`` a non-zero exit fails the test with the command's
    stderr.
    """
    code = f"import sys\n{prelude}\nfrom deepsmote.runtime.cli import entry_point\nentry_point(sys.argv[1:])"
    result = subprocess.run(
        [sys.executable, "-c", code, *map(str, args)], capture_output=True, text=True, timeout=600, env=env
    )
    if check and result.returncode != 0:
        raise AssertionError(result.stderr)
    return result


def run_python(script: str, timeout: float = 600) -> None:
    """Run ``script`` in a fresh interpreter, which must exit 0 after printing ``ok``.

    A fresh process is the only place to check what a job imports (torch, numba) from scratch.
    """
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=timeout)
    assert result.returncode == 0 and "ok" in result.stdout, result.stderr


def cpu_session(path: Path):
    """A plain one-thread onnxruntime CPU session of the graph at ``path``: the references' own,
    built apart from the runtime's session factory."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    return ort.InferenceSession(path.read_bytes(), sess_options=options, providers=["CPUExecutionProvider"])
