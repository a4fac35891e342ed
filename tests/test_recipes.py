"""`--recipe`: a recipe fills the options the user left at their defaults, never the ones given."""

from __future__ import annotations

import click
import pytest
from click.testing import CliRunner
from deepsmote.runtime import recipes
from deepsmote.runtime.recipes import Recipe, recipe_values


@pytest.fixture
def command(monkeypatch):
    monkeypatch.setitem(recipes.RECIPES, "test", Recipe(train={}, generate={"share": 0.5, "kind": "b"}, evidence="x"))
    seen = {}

    @click.command()
    @click.option("--share", type=float, default=1.0)
    @click.option("--kind", default="a")
    @click.option("--recipe", default=None)
    def cli(share: float, kind: str, recipe: str | None) -> None:
        seen.update({"share": share, "kind": kind, **recipe_values(recipe, "generate")})

    return cli, seen


def test_a_recipe_fills_the_defaults(command):
    cli, seen = command
    assert CliRunner().invoke(cli, ["--recipe", "test"]).exit_code == 0
    assert seen == {"share": 0.5, "kind": "b"}


def test_an_explicit_option_wins_even_at_its_default_value(command):
    cli, seen = command
    assert CliRunner().invoke(cli, ["--recipe", "test", "--share", "1.0"]).exit_code == 0
    assert seen == {"share": 1.0, "kind": "b"}


def test_no_recipe_changes_nothing(command):
    cli, seen = command
    assert CliRunner().invoke(cli, ["--kind", "c"]).exit_code == 0
    assert seen == {"share": 1.0, "kind": "c"}
