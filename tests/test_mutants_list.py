"""The mutation check's list (`scripts/mutants.toml`) stays usable and matches the README's table.

`make mutants` itself runs every mutant's tests on a copy of the tree (minutes); this only checks,
in a second, that no mutant is stale (its ``old`` text occurs exactly once in its file), that every
test it names exists, and that the README's "What the tests prove" names every mutant and only
those.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "scripts"))

from mutants import load_mutants  # noqa: E402

MUTANTS = load_mutants()


def test_there_are_at_least_twenty_mutants_with_unique_names():
    names = [m.name for m in MUTANTS]
    assert len(names) >= 20 and len(set(names)) == len(names)


@pytest.mark.parametrize("mutant", MUTANTS, ids=lambda m: m.name)
def test_each_mutant_applies_once_and_names_existing_tests(mutant):
    source = (ROOT / mutant.file).read_text(encoding="utf-8")
    assert source.count(mutant.old) == 1, "stale: the old text must occur exactly once"
    assert mutant.new != mutant.old and mutant.tests
    for test in mutant.tests:
        file, _, name = test.partition("::")
        text = (ROOT / file).read_text(encoding="utf-8")
        assert not name or re.search(rf"^def {re.escape(name)}\(", text, re.MULTILINE), test


def test_the_readme_table_names_every_mutant_and_only_those():
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    table = readme[readme.index("## What the tests prove") : readme.index("## The model bundle")]
    named = set()
    for row in table.splitlines():
        cells = row.split(" | ")
        if row.startswith("| ") and len(cells) >= 3:
            named |= set(re.findall(r"`([a-z0-9-]+)`", cells[-1]))
    assert named == {m.name for m in MUTANTS}
