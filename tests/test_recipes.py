"""`--recipe`: a recipe fills the options the user left at their defaults, never the ones given."""

from __future__ import annotations

import json
from dataclasses import fields

import click
import pytest
from click.testing import CliRunner
from deepsmote.runtime import recipes
from deepsmote.runtime.bundle import load_bundle
from deepsmote.runtime.job import JobSettings
from deepsmote.runtime.outdir import JOB_FILE
from deepsmote.runtime.recipes import Recipe, recipe_values
from golden import GOLDEN_BUNDLE
from helpers import run_main


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


def test_generate_with_the_best_recipe_records_its_settings_and_an_option_overrides_it(fmnist_mini, tmp_path, capsys):
    best = recipes.RECIPES["best"].generate
    strategy = ["--strategy", json.dumps({"8": 30, "9": 20})]
    code, _, err = run_main(
        ["generate", GOLDEN_BUNDLE, fmnist_mini, "--out", tmp_path / "a", "--recipe", "best", *strategy], capsys
    )
    assert code == 0, err
    job = json.loads((tmp_path / "a" / JOB_FILE).read_text())
    defaults = {f.name: f.default for f in fields(JobSettings)}  # left out of the job file when at them
    for name, value in best.items():
        assert job.get(name, defaults[name]) == value, name
    assert job["synthetic_share"] == 0.5
    explicit = ["--synthetic-share", "1", "--sampler", "smote"]
    code, _, err = run_main(
        ["generate", GOLDEN_BUNDLE, fmnist_mini, "--out", tmp_path / "b", "--recipe", "best", *explicit, *strategy],
        capsys,
    )
    assert code == 0, err
    job = json.loads((tmp_path / "b" / JOB_FILE).read_text())
    # The defaults, given explicitly, won; at their defaults they are left out of the job file (older OUTs resume).
    assert not {"synthetic_share", "sampler", "filter_threshold", "max_draw_ratio"} & set(job)


def test_train_with_the_best_recipe_takes_its_model_unless_told(fmnist_mini, tmp_path, capsys):
    best = recipes.RECIPES["best"].train
    tiny = ["--epochs", "1", "--width", "8", "--latent-dim", "16", "--device", "cpu"]
    out = tmp_path / "bundle"
    code, _, err = run_main(["train", fmnist_mini, "--out", out, "--recipe", "best", "--loss", "mse", *tiny], capsys)
    assert code == 0, err
    config = load_bundle(out).manifest.training.config
    assert config["loss"] == "mse"
    for name in set(best) - {"loss", "classifier"}:
        assert config[name] == best[name], name
    assert (load_bundle(out).manifest.classifier is not None) == bool(best.get("classifier"))
