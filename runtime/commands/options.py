"""Options shared by commands: ``--resize HxW`` and ``--crop`` (DATA), ``--sampler`` (oversampling),
and the checks of an ``--out`` file.

Internal module: the command line is the interface (``deepsmote --help``).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click

from ..errors import DeepSMOTEError
from ..latent_samplers import SAMPLERS
from ..remix import BASES, PARTNERS, RemixSettings
from ..resize import CROPS

RESIZE_HELP = "Resize every DATA image to HxW on reading (Pillow's Lanczos), e.g. 64x64."
CROP_HELP = "With --resize: 'center' cuts the centred region of HxW's aspect ratio first; 'none' stretches."


def resize_options(command: Callable[..., Any]) -> Callable[..., Any]:
    """Add ``--resize`` and ``--crop`` (passed as ``resize`` and ``crop``) to a click command."""
    command = click.option("--crop", default="none", show_default=True, type=click.Choice(CROPS), help=CROP_HELP)(
        command
    )
    return click.option("--resize", default=None, metavar="HxW", help=RESIZE_HELP)(command)


SAMPLER_HELP = (
    "Which codes serve as SMOTE bases: all (smote), the borderline ones (borderline), or ADASYN's weights; "
    "or latent Remix (remix): each base mixed with a code of any class, with soft labels."
)


def sampler_option(command: Callable[..., Any]) -> Callable[..., Any]:
    """Add ``--sampler`` (passed as ``sampler``) to a click command."""
    return click.option(
        "--sampler", default="smote", show_default=True, type=click.Choice(SAMPLERS), help=SAMPLER_HELP
    )(command)


def remix_options(command: Callable[..., Any]) -> Callable[..., Any]:
    """Add latent Remix's ``--remix-min-weight``, ``--remix-kappa``, ``--remix-tau``, ``--remix-partner`` and
    ``--remix-base`` (passed as ``remix_min_weight`` ...); :func:`remix_settings` turns them into settings."""
    defaults = RemixSettings()
    options = [
        click.option(
            "--remix-base",
            default=defaults.base,
            show_default=True,
            type=click.Choice(BASES),
            help="--sampler remix: bases drawn uniformly (smote) or with that latent sampler's weights.",
        ),
        click.option(
            "--remix-partner",
            default=defaults.partner,
            show_default=True,
            type=click.Choice(PARTNERS),
            help="--sampler remix: the partner from all training images, or among the base's --k nearest "
            "codes of other classes.",
        ),
        click.option(
            "--remix-tau",
            default=defaults.tau,
            show_default=True,
            type=float,
            help="--sampler remix: the larger class's weight under which the smaller class keeps the label alone.",
        ),
        click.option(
            "--remix-kappa",
            default=defaults.kappa,
            show_default=True,
            type=float,
            help="--sampler remix: the class-size ratio from which that hard-label rule applies.",
        ),
        click.option(
            "--remix-min-weight",
            default=defaults.min_weight,
            show_default=True,
            type=float,
            help="--sampler remix: the base's weight is drawn from [W, 1).",
        ),
    ]
    for option in options:
        command = option(command)
    return command


def remix_settings(
    sampler: str, remix_min_weight: float, remix_kappa: float, remix_tau: float, remix_partner: str, remix_base: str
) -> RemixSettings | None:
    """The settings ``--sampler remix`` runs with; None for another sampler, which refuses any
    remix option set away from its default (it would be ignored)."""
    settings = RemixSettings(remix_min_weight, remix_kappa, remix_tau, remix_partner, remix_base)
    if sampler == "remix":
        return settings
    if settings != RemixSettings():
        raise DeepSMOTEError("the --remix-* options apply to --sampler remix only; add it or leave them out")
    return None


def checked_out_file(out: str, overwrite: bool) -> Path:
    """``--out`` as a file to write, refused before any work: there already (without ``overwrite``),
    or in a folder that is missing or not writable, rather than found so at the end."""
    target = Path(out)
    if target.exists() and not overwrite:
        raise DeepSMOTEError(f"--out {target} exists; pass --overwrite to replace it")
    folder = target.parent
    if not folder.is_dir():
        raise DeepSMOTEError(f"--out {target}: the folder {folder} does not exist; create it or choose another --out")
    if not os.access(folder, os.W_OK | os.X_OK):
        raise DeepSMOTEError(f"--out {target}: the folder {folder} is not writable; choose another --out")
    return target
