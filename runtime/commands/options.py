"""Options shared by the commands that read DATA: ``--resize HxW`` and ``--crop``.

Internal module: the command line is the interface (``deepsmote --help``).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import click

from ..resize import CROPS

RESIZE_HELP = "Resize every DATA image to HxW on reading (Pillow's Lanczos), e.g. 64x64."
CROP_HELP = "With --resize: 'center' cuts the centred region of HxW's aspect ratio first; 'none' stretches."


def resize_options(command: Callable[..., Any]) -> Callable[..., Any]:
    """Add ``--resize`` and ``--crop`` (passed as ``resize`` and ``crop``) to a click command."""
    command = click.option("--crop", default="none", show_default=True, type=click.Choice(CROPS), help=CROP_HELP)(
        command
    )
    return click.option("--resize", default=None, metavar="HxW", help=RESIZE_HELP)(command)
