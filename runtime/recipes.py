"""Named option sets (``--recipe``): what the evaluation found best, one flag away.

A recipe gives values to some options of ``train`` and ``generate``; an option the user sets
explicitly keeps the user's value. The evidence for each recipe is the table named in its
``evidence`` (``benchmarks/quality``), chosen on the protocol's validation split only.

Internal module: the command line is the interface (``deepsmote --help``).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import click
from click.core import ParameterSource

__all__ = ["RECIPES", "Recipe", "recipe_option", "recipe_values"]


@dataclass(frozen=True)
class Recipe:
    """Option values per command, by the commands' parameter names.

    Attributes
    ----------
    train : mapping
        Values for ``deepsmote train``'s parameters.
    generate : mapping
        Values for ``deepsmote generate``'s parameters.
    evidence : str
        Where the measurements that chose it are.
    """

    train: Mapping[str, Any]
    generate: Mapping[str, Any]
    evidence: str


# Chosen on the validation split of benchmarks/quality's `cpu` run (Fashion-MNIST 100:1, 3 seeds):
# of the DeepSMOTE recipes, half synthetic and half real repeats scored best, with `train`'s
# own generator; the gate, Borderline-SMOTE, ADASYN and deferral did not help there.
RECIPES: dict[str, Recipe] = {
    "best": Recipe(
        train={"arch": "resize-conv", "loss": "l1+ssim", "penalty": "reference"},
        generate={"synthetic_share": 0.5, "sampler": "smote"},
        evidence="benchmarks/quality/README.md, cpu preset",
    ),
}


def recipe_option(command: Callable[..., Any]) -> Callable[..., Any]:
    """Add ``--recipe`` (passed as ``recipe``) to a click command."""
    names = ", ".join(f"{name} ({recipe.evidence})" for name, recipe in RECIPES.items())
    return click.option(
        "--recipe",
        default=None,
        type=click.Choice(sorted(RECIPES)),
        help=f"Take the options of a measured recipe; options given explicitly win: {names}.",
    )(command)


def recipe_values(recipe: str | None, command: str, ctx: click.Context | None = None) -> dict[str, Any]:
    """The recipe's values for ``command``'s parameters that the user left at their defaults.

    Parameters
    ----------
    recipe : str or None
        A name of :data:`RECIPES`; None gives nothing.
    command : {'train', 'generate'}
    ctx : click.Context, optional
        The running command's context [default: the current one].
    """
    if recipe is None:
        return {}
    ctx = ctx or click.get_current_context()
    values: Mapping[str, Any] = getattr(RECIPES[recipe], command)
    return {name: value for name, value in values.items() if ctx.get_parameter_source(name) == ParameterSource.DEFAULT}
