"""Options shared by commands: ``--resize HxW`` and ``--crop`` (DATA), ``--sampler`` (oversampling).

Internal module: the command line is the interface (``deepsmote --help``).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import click

from ..latent_samplers import SAMPLERS
from ..resize import CROPS

RESIZE_HELP = "Resize every DATA image to HxW on reading (Pillow's Lanczos), e.g. 64x64."
CROP_HELP = "With --resize: 'center' cuts the centred region of HxW's aspect ratio first; 'none' stretches."


def resize_options(command: Callable[..., Any]) -> Callable[..., Any]:
    """Add ``--resize`` and ``--crop`` (passed as ``resize`` and ``crop``) to a click command."""
    command = click.option("--crop", default="none", show_default=True, type=click.Choice(CROPS), help=CROP_HELP)(
        command
    )
    return click.option("--resize", default=None, metavar="HxW", help=RESIZE_HELP)(command)


SAMPLER_HELP = "Which codes serve as SMOTE bases: all (smote), the borderline ones (borderline), or ADASYN's weights."


def sampler_option(command: Callable[..., Any]) -> Callable[..., Any]:
    """Add ``--sampler`` (passed as ``sampler``) to a click command."""
    return click.option(
        "--sampler", default="smote", show_default=True, type=click.Choice(SAMPLERS), help=SAMPLER_HELP
    )(command)
