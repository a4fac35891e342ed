"""The project's mutation check: each mutant of `scripts/mutants.toml` must be killed by its tests.

A mutant is a small source patch (``old`` replaced by ``new`` in ``file``; ``old`` must occur
exactly once there, else the mutant is stale and reported as an error) and the tests that must
fail under it. Each is applied to its own temporary copy of the tree (the files git tracks, and
the untracked ones it does not ignore), and the named tests run in that copy, with an import path
on which ``deepsmote`` is the copy's code, not the editable install's: the script checks, in the
copy's interpreter, that the mutated module is imported from the copy before it runs the tests.
The tests of every mutant first run once on an unmutated copy, which must pass them, so that a
test that fails anyway is never counted as a kill. Then a table (mutant, tests, killed or
survived, the first failing test); the exit status is non-zero if any mutant survived, was stale
or could not be checked::

    python scripts/mutants.py              # every mutant (make mutants)
    python scripts/mutants.py NAME ...     # only these
    python scripts/mutants.py --list       # names and what each breaks
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import tomllib
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
MUTANTS_FILE = ROOT / "scripts" / "mutants.toml"
# The top-level folders that are `deepsmote`'s subpackages (pyproject.toml's package-dir).
SUBPACKAGES = ("training", "runtime", "kernels", "evaluation", "data")
# A mutant whose tests run longer than this is reported as not checked.
TIMEOUT_S = 900


@dataclass(frozen=True)
class Mutant:
    """One source patch and the tests that must fail under it."""

    name: str
    file: str
    old: str
    new: str
    tests: tuple[str, ...]
    breaks: str

    @property
    def module(self) -> str | None:
        """The dotted module the patched file is imported as; None for a file outside the package
        (a benchmark script, which its tests run from the copy's folder)."""
        parts = Path(self.file).with_suffix("").parts
        if parts[0] not in SUBPACKAGES:
            return None
        if parts[-1] == "__init__":
            parts = parts[:-1]
        return ".".join(("deepsmote", *parts))


@dataclass
class Outcome:
    """What happened to one mutant."""

    mutant: Mutant
    status: str  # killed, survived, stale, error
    killer: str
    seconds: float


def load_mutants(path: Path = MUTANTS_FILE) -> list[Mutant]:
    """The mutants listed in ``path``, in its order; names must be unique."""
    entries = tomllib.loads(path.read_text(encoding="utf-8"))["mutant"]
    mutants = [
        Mutant(e["name"], e["file"], e["old"], e["new"], tuple(e["tests"]), e.get("breaks", "")) for e in entries
    ]
    names = [m.name for m in mutants]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise SystemExit(f"{path}: duplicate mutant names: {', '.join(duplicates)}")
    return mutants


def tree_files(root: Path = ROOT) -> list[str]:
    """The files of the tree as the tests see them: tracked, and untracked but not ignored."""
    listed = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=root,
        check=True,
        capture_output=True,
    ).stdout
    return [name for name in listed.decode().split("\0") if name and (root / name).is_file()]


def copy_tree(files: list[str], target: Path, root: Path = ROOT) -> Path:
    """Copy ``files`` under ``target / 'tree'`` and build the import shim beside it; returns the tree.

    The shim (``target / 'shim' / 'deepsmote'``) links each subpackage to the copy's folder, so with
    the shim first on ``PYTHONPATH`` ``import deepsmote.runtime`` finds the copy before the
    editable install's finder (which Python consults after its path finder). Modification times
    are kept, so numba's on-disk cache of the kernels, copied too, stays valid.
    """
    tree = target / "tree"
    for name in files:
        destination = tree / name
        destination.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(root / name, destination)
    for cache in (root / "kernels" / "__pycache__").glob("*.nb[ic]"):
        (tree / "kernels" / "__pycache__").mkdir(parents=True, exist_ok=True)
        shutil.copy2(cache, tree / "kernels" / "__pycache__" / cache.name)
    shim = target / "shim" / "deepsmote"
    shim.mkdir(parents=True)
    for package in SUBPACKAGES:
        (shim / package).symlink_to(tree / package, target_is_directory=True)
    return tree


def environment(tree: Path) -> dict[str, str]:
    """The environment the copy's tests run in: the shim first on the import path."""
    env = dict(os.environ)
    shim = str(tree.parent / "shim")
    env["PYTHONPATH"] = os.pathsep.join([shim, *filter(None, [env.get("PYTHONPATH")])])
    env["PYTHONDONTWRITEBYTECODE"] = "1"
    return env


def check_imports(tree: Path, module: str) -> str | None:
    """None if ``module`` is imported from ``tree`` in the copy's environment, else why not."""
    probe = f"import importlib, pathlib; print(pathlib.Path(importlib.import_module({module!r}).__file__).resolve())"
    result = subprocess.run(
        [sys.executable, "-c", probe], cwd=tree, env=environment(tree), capture_output=True, text=True
    )
    if result.returncode != 0:
        return f"import {module} failed: {result.stderr.strip().splitlines()[-1:]}"
    where = Path(result.stdout.strip())
    if not where.is_relative_to(tree.resolve()):
        return f"{module} was imported from {where}, not from the copy"
    return None


def run_tests(tree: Path, tests: tuple[str, ...]) -> tuple[int, str]:
    """Exit status and output of pytest on ``tests`` in ``tree``, stopping at the first failure."""
    command = [sys.executable, "-m", "pytest", "-x", "-q", "-p", "no:cacheprovider", "-rfE", *tests]
    try:
        result = subprocess.run(
            command, cwd=tree, env=environment(tree), capture_output=True, text=True, timeout=TIMEOUT_S
        )
    except subprocess.TimeoutExpired:
        return -1, f"timed out after {TIMEOUT_S} s"
    return result.returncode, result.stdout + result.stderr


def first_failure(output: str) -> str:
    """The first test pytest's summary names as failed or erroring, with its one-line reason, or the
    output's last line."""
    match = re.search(r"^(?:FAILED|ERROR) (.+?)(?: - .*)?$", output, re.MULTILINE)
    if match:
        test = match.group(1).removeprefix("tests/")
        # pytest's first "E" line of the traceback: the exception and its message.
        reason = re.search(r"^E +(\S.*)$", output, re.MULTILINE)
        return f"{test}: {reason.group(1)[:60]}" if reason else test
    lines = [line for line in output.splitlines() if line.strip()]
    return lines[-1] if lines else "no output"


def check_mutant(mutant: Mutant, files: list[str], scratch: Path, source: Path) -> Outcome:
    """Apply ``mutant`` to a fresh copy of ``source``, run its tests there, and say whether they failed."""
    began = time.perf_counter()
    tree = copy_tree(files, scratch / mutant.name, source)
    target = tree / mutant.file
    if not target.is_file():
        return Outcome(mutant, "stale", f"{mutant.file} is not in the tree", 0.0)
    source = target.read_text(encoding="utf-8")
    found = source.count(mutant.old)
    if found != 1:
        return Outcome(mutant, "stale", f"the old snippet occurs {found} times in {mutant.file}", 0.0)
    target.write_text(source.replace(mutant.old, mutant.new), encoding="utf-8")
    problem = None if mutant.module is None else check_imports(tree, mutant.module)
    if problem is not None:
        # A mutant that breaks the import is killed by every test, but says nothing: an error.
        return Outcome(mutant, "error", problem, time.perf_counter() - began)
    code, output = run_tests(tree, mutant.tests)
    seconds = time.perf_counter() - began
    if code == 0:
        return Outcome(mutant, "survived", "", seconds)
    if code == 1:
        return Outcome(mutant, "killed", first_failure(output), seconds)
    # 2-5: interrupted, internal error, usage error, no tests collected; -1: timed out.
    return Outcome(mutant, "error", f"pytest exit {code}: {first_failure(output)}", seconds)


def check_baseline(mutants: list[Mutant], files: list[str], scratch: Path, source: Path) -> str | None:
    """None if an unmutated copy of ``source`` passes every test the mutants name, else the first failure."""
    tests = tuple(dict.fromkeys(t for m in mutants for t in m.tests))
    tree = copy_tree(files, scratch / "baseline", source)
    for module in sorted({m.module for m in mutants if m.module is not None}):
        problem = check_imports(tree, module)
        if problem is not None:
            return problem
    code, output = run_tests(tree, tests)
    return None if code == 0 else f"pytest exit {code}: {first_failure(output)}"


def _tests(tests: tuple[str, ...]) -> str:
    """The test files a mutant names, each with how many of its tests when it names some only."""
    files: dict[str, int] = {}
    for test in tests:
        file, _, name = test.partition("::")
        files[Path(file).name] = files.get(Path(file).name, 0) + (1 if name else 0)
    return ", ".join(f"{file} ({n} test{'s' * (n > 1)})" if n else file for file, n in files.items())


def table(outcomes: list[Outcome]) -> str:
    """The outcomes as a text table: mutant, tests, result, killer."""
    rows = [("mutant", "tests", "result", "killer", "s")]
    rows += [(o.mutant.name, _tests(o.mutant.tests), o.status, o.killer, f"{o.seconds:.0f}") for o in outcomes]
    widths = [max(len(row[i]) for row in rows) for i in range(4)]
    lines = ["  ".join(cell.ljust(w) for cell, w in zip(row[:4], widths, strict=True)) + "  " + row[4] for row in rows]
    lines.insert(1, "  ".join("-" * w for w in widths) + "  --")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("names", nargs="*", help="only these mutants (default: all)")
    parser.add_argument("--list", action="store_true", help="list the mutants and exit")
    parser.add_argument("--no-baseline", action="store_true", help="skip the run on the unmutated copy")
    args = parser.parse_args(argv)
    mutants = load_mutants()
    if args.list:
        for m in mutants:
            print(f"{m.name}: {m.file}: {m.breaks}")
        return 0
    unknown = sorted(set(args.names) - {m.name for m in mutants})
    if unknown:
        parser.error(f"no such mutant: {', '.join(unknown)}")
    chosen = [m for m in mutants if not args.names or m.name in args.names]
    began = time.perf_counter()
    files = tree_files()
    with tempfile.TemporaryDirectory(prefix="deepsmote-mutants-") as tmp:
        scratch = Path(tmp)
        # One snapshot of the tree as it is now, which every copy is made from: edits made while
        # the check runs do not reach it.
        source = copy_tree(files, scratch / "snapshot")
        if not args.no_baseline:
            failure = check_baseline(chosen, files, scratch, source)
            if failure is not None:
                print(f"the unmutated tree fails the mutants' tests: {failure}", file=sys.stderr)
                return 2
            print(f"baseline: the unmutated copy passes the tests ({time.perf_counter() - began:.0f} s)", flush=True)
        outcomes = []
        for mutant in chosen:
            outcome = check_mutant(mutant, files, scratch, source)
            outcomes.append(outcome)
            print(f"{mutant.name}: {outcome.status} ({outcome.seconds:.0f} s)", flush=True)
            shutil.rmtree(scratch / mutant.name, ignore_errors=True)
    print()
    print(table(outcomes))
    killed = sum(o.status == "killed" for o in outcomes)
    print(f"\n{killed} of {len(outcomes)} mutants killed in {time.perf_counter() - began:.0f} s")
    return 0 if killed == len(outcomes) else 1


if __name__ == "__main__":
    sys.exit(main())
