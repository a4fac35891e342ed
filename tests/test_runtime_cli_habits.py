"""Command-line habits: progress lines without a terminal, -q/-v after the subcommand, one-line
warnings, a dry run that writes nothing, a per-class table at the end, no lock left, inspect --json."""

from __future__ import annotations

import json
import re
from importlib.metadata import entry_points
from pathlib import Path

from deepsmote.data import fmnist_mini
from helpers import run_cli, run_python

GOLDEN_BUNDLE = Path(__file__).resolve().parent / "data" / "golden" / "bundle"
JOB = ["generate", str(GOLDEN_BUNDLE), str(fmnist_mini()), "--format", "webdataset", "--shard-size", "1000"]


def test_generate_without_a_terminal_prints_one_line_per_shard_and_ends_with_a_table(tmp_path):
    out = tmp_path / "out"
    result = run_cli(*JOB, "--out", str(out))  # stderr is a pipe, not a terminal
    progress = [line for line in result.stderr.splitlines() if line.startswith("generate: ")]
    assert [line.split(",")[0] for line in progress] == [f"generate: {i}/4 shards" for i in range(1, 5)]
    # the sampler's small-class warning, as one line without a source path
    warnings = [line for line in result.stderr.splitlines() if "neighbours" in line]
    assert warnings == ["Warning: class '9' has 4 samples: using 3 neighbours instead of 5"]
    assert "UserWarning" not in result.stderr and ".py" not in result.stderr
    table = result.stdout.splitlines()[1:]
    assert table[0].split() == ["class", "original", "synthetic", "total"]
    assert [row.split() for row in table[1:]][9] == ["9", "4", "396", "400"] and len(table) == 11
    assert not (out / ".deepsmote.lock").exists()


def test_quiet_and_verbose_are_taken_after_the_subcommand(tmp_path):
    quiet = run_cli(*JOB, "--out", str(tmp_path / "q"), "-q")
    assert not [line for line in quiet.stderr.splitlines() if line.startswith("generate: ")]
    verbose = run_cli(*JOB, "--out", str(tmp_path / "v"), "-v")
    assert "INFO deepsmote.runtime.bundle.session: onnxruntime session on CPUExecutionProvider" in verbose.stderr
    plain = run_cli(*JOB, "--out", str(tmp_path / "p"))
    assert "INFO" not in plain.stderr
    for command in (["inspect", str(GOLDEN_BUNDLE)], ["grid", "--help"], ["train", "--help"], ["evaluate", "--help"]):
        assert "-q, --quiet" in run_cli(*command, "--help").stdout, command


def test_dry_run_prints_the_plan_and_writes_nothing(tmp_path):
    out = tmp_path / "out"
    result = run_cli(*JOB, "--out", str(out), "--dry-run", "--include-originals")
    rows = [line.split() for line in result.stdout.splitlines()[2:]]
    assert result.stdout.splitlines()[1].split() == ["class", "current", "target", "to", "generate", "shards"]
    assert rows[0] == ["0", "400", "400", "0", "4"] and rows[9] == ["9", "4", "400", "396", "4"]
    assert not out.exists()


def test_inspect_json(tmp_path):
    report = json.loads(run_cli("inspect", str(GOLDEN_BUNDLE), "--json").stdout)
    assert report["hashes"] == "ok" and len(report["fingerprint"]) == 64
    assert report["manifest"]["classes"] == [str(c) for c in range(10)]


def test_train_without_a_terminal_prints_one_line_per_epoch_and_no_library_info(tmp_path):
    import numpy as np
    from deepsmote.runtime import read_dataset

    data = read_dataset(fmnist_mini())
    rows = np.concatenate([np.flatnonzero(data.labels == c)[:20] for c in range(3)])
    small = tmp_path / "small.npz"
    np.savez(small, images=data.images[rows], labels=data.labels[rows])
    result = run_cli(
        "train", str(small), "--out", str(tmp_path / "b"), "--epochs", "2", "--width", "4", "--latent-dim", "8"
    )
    progress = [line for line in result.stderr.splitlines() if line.startswith("train: ")]
    assert [line.split(",")[0] for line in progress] == ["train: 1/2 epochs", "train: 2/2 epochs"]
    # after the first epoch, the time left at its pace; none once done
    assert re.search(r", about [0-9.]+ (s|min|h) left$", progress[0]) and " left" not in progress[1]
    assert "INFO" not in result.stderr and "onnxscript" not in result.stderr, result.stderr
    assert [line.split() for line in result.stdout.splitlines()[-4:]] == [
        ["class", "training", "images"],
        ["0", "20"],
        ["1", "20"],
        ["2", "20"],
    ]


def test_progress_lines_estimate_the_time_left_at_the_runs_pace(capsys, monkeypatch):
    from deepsmote.runtime import console

    clock = iter([100.0, 130.0, 160.0, 1000.0])
    monkeypatch.setattr(console.time, "perf_counter", lambda: next(clock))
    lines = console.LineProgress(10, 2, "train", "epochs")  # resumed after 2 epochs
    lines.update(1)  # 30 s for one epoch: 7 left
    lines.update(1)
    lines.update(6)
    err = capsys.readouterr().err.splitlines()
    assert err[0] == "train: 3/10 epochs, 30.0 s, about 3.5 min left"
    assert err[1] == "train: 4/10 epochs, 60.0 s, about 3.0 min left"
    assert err[2] == "train: 10/10 epochs, 900.0 s"


def test_the_installed_command_leaves_its_objects_out_of_the_last_collection_and_main_does_not():
    # The last collection at exit walks all of numba's and onnxruntime's objects (0.25 s); `main`,
    # which tests and callers run in their own process, must not freeze theirs.
    scripts = entry_points(group="console_scripts", name="deepsmote")
    assert [script.value for script in scripts] == ["deepsmote.runtime.cli:entry_point"]
    run_python(f"""
import gc
from deepsmote.runtime.cli import entry_point, main
main(["inspect", {str(GOLDEN_BUNDLE)!r}])
assert gc.get_freeze_count() == 0, "main froze the caller's objects"
entry_point(["inspect", {str(GOLDEN_BUNDLE)!r}])
assert gc.get_freeze_count() > 0, "the command leaves its objects to the last collection"
try:
    entry_point(["inspect", "no-such-bundle"])
except SystemExit as exit_:
    assert exit_.code == 1, exit_.code
print("ok")
""")


def test_shell_completion_as_the_readme_documents_it():
    import os
    import subprocess
    import sys

    command = Path(sys.executable).parent / "deepsmote"
    script = subprocess.run(
        [command], env={**os.environ, "_DEEPSMOTE_COMPLETE": "bash_source"}, capture_output=True, text=True
    )
    assert script.returncode == 0 and "_deepsmote_completion()" in script.stdout
    words = {**os.environ, "_DEEPSMOTE_COMPLETE": "bash_complete", "COMP_WORDS": "deepsmote generate --synth"}
    offered = subprocess.run([command], env={**words, "COMP_CWORD": "2"}, capture_output=True, text=True)
    assert offered.stdout.split() == ["plain,--synthetic-only", "plain,--synthetic-share"]
    assert "_DEEPSMOTE_COMPLETE=bash_source deepsmote" in (Path(__file__).parents[1] / "README.md").read_text()
