"""Resizing DATA on reading: ``--resize HxW`` and ``--crop`` for image sets of other or mixed sizes.

Each image is resized on its own with Pillow's Lanczos filter (antialiased when it shrinks).
With ``crop='center'`` the largest centred region of the target's aspect ratio is cut out first,
so nothing is stretched; with ``crop='none'`` the whole image is stretched to H x W.

Internal module: the readers take a :class:`Resize`; the CLI builds it from its flags.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

import numpy as np

from .errors import DeepSMOTEError, InvalidInputError

if TYPE_CHECKING:
    from PIL.Image import Image as PILImage

__all__ = ["CROPS", "Resize", "check_image_shape", "describe_shape", "parse_resize"]

Crop = Literal["none", "center"]
CROPS: tuple[str, ...] = ("none", "center")
# The readers refuse larger images; a larger target could only be upsampled garbage.
MAX_SIDE = 1024
_SIZE = re.compile(r"^\s*(\d+)\s*[xX]\s*(\d+)\s*$")


@dataclass(frozen=True)
class Resize:
    """The size every image is brought to on reading.

    Attributes
    ----------
    height, width : int
        The target H x W, each in 1..1024.
    crop : {'none', 'center'}
        Cut the centred region of the target's aspect ratio before resizing, or stretch.
    """

    height: int
    width: int
    crop: Crop = "none"

    def image(self, image: PILImage) -> PILImage:
        """The Pillow ``image`` cropped (``center``) and resized to (width, height)."""
        from PIL import Image

        box = None
        if self.crop == "center":
            w, h = image.size
            # The largest box of the target's aspect ratio that fits, centred.
            scale = min(w / self.width, h / self.height)
            bw, bh = self.width * scale, self.height * scale
            box = ((w - bw) / 2, (h - bh) / 2, (w + bw) / 2, (h + bh) / 2)
        return image.resize((self.width, self.height), Image.Resampling.LANCZOS, box=box)

    def images(self, images: np.ndarray) -> np.ndarray:
        """Resize uint8 images (N, H, W) or (N, H, W, 3) to (N, height, width[, 3])."""
        from PIL import Image

        if images.shape[1:3] == (self.height, self.width) and self.crop == "none":
            return images
        out = np.empty((len(images), self.height, self.width, *images.shape[3:]), dtype=np.uint8)
        for i, image in enumerate(images):
            out[i] = np.asarray(self.image(Image.fromarray(image)))
        return out


def parse_resize(text: str | None, crop: str = "none") -> Resize | None:
    """The :class:`Resize` of ``--resize HxW`` and ``--crop``, or None without ``--resize``.

    Raises
    ------
    DeepSMOTEError
        For a size that is not ``HxW`` with sides 1..1024, an unknown crop, or a crop without a
        size.
    """
    if crop not in CROPS:
        raise InvalidInputError(f"`crop` must be one of {', '.join(CROPS)}, got {crop!r}")
    if text is None:
        if crop != "none":
            raise InvalidInputError(f"`crop` {crop} needs a target size: pass `resize` HxW as well")
        return None
    match = _SIZE.match(text)
    # A side of more digits than any allowed one is refused before int() (which refuses 4,300).
    if match is None or not all(len(v) <= 6 and 1 <= int(v) <= MAX_SIDE for v in match.groups()):
        raise InvalidInputError(f"`resize` must be HxW with sides 1..{MAX_SIDE}, like 64x64; got {text!r}")
    return Resize(int(match[1]), int(match[2]), crop)  # type: ignore[arg-type]


def describe_shape(image_shape: tuple[int, int, int]) -> str:
    """A model's (C, H, W) as people read it: ``28x28 (HxW), 1 channel``."""
    channels, height, width = image_shape
    return f"{height}x{width} (HxW), {channels} channel{'s' if channels > 1 else ''}"


def check_image_shape(data_shape: tuple[int, int, int], bundle_shape: tuple[int, int, int]) -> None:
    """Refuse DATA whose (C, H, W) is not the bundle's, naming the size it expects and the fix.

    Raises
    ------
    DeepSMOTEError
        Suggesting ``resize`` when only H and W differ; a channel count cannot be resized.
    """
    if data_shape == bundle_shape:
        return
    problem = f"DATA images are {describe_shape(data_shape)} but the bundle expects {describe_shape(bundle_shape)}"
    if data_shape[0] != bundle_shape[0]:
        raise DeepSMOTEError(f"{problem}; use a bundle trained on {data_shape[0]}-channel images")
    raise DeepSMOTEError(f"{problem}; pass `resize` {bundle_shape[1]}x{bundle_shape[2]} or use a bundle of this size")
