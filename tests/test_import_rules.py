"""The rooms' import rules (docs/design.md §5), read from the source of every module.

``runtime`` and ``kernels`` never import ``torch``, ``training`` or ``evaluation``; ``kernels``
imports nothing of ``runtime``; ``training`` never imports ``evaluation``. A lazy import inside a
function counts like one at the top: the rule is about what a room may depend on at all. The CLI's
table of lazily loaded commands names training and evaluation modules as strings, which is how the
runtime reaches them without importing them.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
ROOMS = {"runtime": "deepsmote.runtime", "kernels": "deepsmote.kernels", "training": "deepsmote.training"}
FORBIDDEN = {
    "runtime": ("torch", "deepsmote.training", "deepsmote.evaluation"),
    "kernels": ("torch", "deepsmote.training", "deepsmote.evaluation", "deepsmote.runtime"),
    "training": ("deepsmote.evaluation",),
}


def imported_modules(path: Path, package: str) -> set[str]:
    """Every module that ``path`` imports, relative imports resolved against ``package``."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    parts = package.split(".")
    modules = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            modules.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = parts[: len(parts) - node.level + 1]
                modules.add(".".join([*base, node.module] if node.module else base))
            else:
                modules.add(node.module or "")
    return modules


def room_modules(room: str) -> list[tuple[Path, str]]:
    result = []
    for path in sorted((ROOT / room).rglob("*.py")):
        relative = path.relative_to(ROOT / room).with_suffix("")
        dotted = ".".join([ROOMS[room], *relative.parts])
        package = dotted.removesuffix(".__init__") if path.name == "__init__.py" else dotted.rsplit(".", 1)[0]
        result.append((path, package))
    return result


@pytest.mark.parametrize("room", sorted(FORBIDDEN))
def test_a_room_imports_only_what_its_rules_allow(room):
    breaches = []
    for path, package in room_modules(room):
        for module in imported_modules(path, package):
            if any(module == f or module.startswith(f + ".") for f in FORBIDDEN[room]):
                breaches.append(f"{path.relative_to(ROOT)} imports {module}")
    assert not breaches, breaches
    assert room_modules(room), f"no modules found under {room}/"


def test_the_checker_sees_relative_and_lazy_imports(tmp_path):
    # A rule that cannot see a breach proves nothing: feed it one of each kind.
    source = tmp_path / "mod.py"
    source.write_text("from ..training import x\n\ndef f():\n    import torch\n    from . import sibling\n")
    assert imported_modules(source, "deepsmote.runtime.commands") == {
        "deepsmote.runtime.training",
        "torch",
        "deepsmote.runtime.commands",
    }
    assert imported_modules(source, "deepsmote.runtime") == {"deepsmote.training", "torch", "deepsmote.runtime"}
