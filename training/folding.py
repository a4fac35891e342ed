"""An eval-mode BatchNorm folded into the convolution before it, in float64: the exported arrangements' weights."""

from __future__ import annotations

import torch
from torch import nn


def folded_batchnorm(bias: torch.Tensor, norm: nn.BatchNorm2d) -> tuple[torch.Tensor, torch.Tensor]:
    """``norm`` (eval mode) after a convolution of bias ``bias`` (C,), as a scale and a bias per channel.

    Returns
    -------
    scale : torch.Tensor
        float64 (C,): the convolution's weights are multiplied by it along their output-channel axis.
    bias : torch.Tensor
        float64 (C,): ``(bias - mean) * scale + beta``.
    """
    scale = norm.weight.double() / torch.sqrt(norm.running_var.double() + norm.eps)
    return scale, (bias.double() - norm.running_mean.double()) * scale + norm.bias.double()
