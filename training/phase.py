"""Nearest x2 upsampling followed by a 3x3 convolution, computed as four 2x2 convolutions.

After the upsampling, output pixel (2i + a, 2j + b) of the 3x3 convolution (padding 1) reads only
input rows i - 1 + a, i + a and columns j - 1 + b, j + b, some of its nine taps landing on the same
input pixel. So the pair is four 2x2 convolutions of the unscaled map, one per output phase
(a, b), interleaved: the sub-pixel view of resize-convolution (Shi et al., CVPR 2016; Odena et
al., Distill 2016). That is 16 multiply-adds per input pixel and channel pair instead of 36, and
no upsampled map to convolve or back-propagate through.

Two forms compute it. `phase_conv`, for training, runs the four kernels as one convolution with
four times the output channels over the map padded by 1 on every side, and slices each phase's
outputs from it: oneDNN runs that forward and backward 1.2-1.4x as fast as four convolutions.
`phase_conv_per_phase`, for the exported CPU graph, runs each phase's kernel over the map padded
on the two sides that phase reads, so no output is computed to be cut away (at a 4x4 map, 16 of
every 25): onnxruntime ran the whole width-64 decoder 1.18-1.28x as fast that way at 64x64x3
and 128x128x3, and a width-16 one as fast as before.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

# Per output phase, which of the 3x3 kernel's rows (columns) fall on each of the two input rows
# (columns) it reads: phase 0 reads rows (i - 1, i) with taps (0, 1 + 2), phase 1 rows (i, i + 1)
# with taps (0 + 1, 2).
_PHASE_TAPS = ((1.0, 0.0, 0.0), (0.0, 1.0, 1.0)), ((1.0, 1.0, 0.0), (0.0, 0.0, 1.0))


def phase_kernels(weight: torch.Tensor, bias: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor | None]:
    """The phase kernels of a 3x3 convolution, differentiable in its weights.

    Parameters
    ----------
    weight : torch.Tensor
        shape (c_out, c_in, 3, 3).
    bias : torch.Tensor or None
        shape (c_out,).

    Returns
    -------
    kernels : torch.Tensor
        shape (4 c_out, c_in, 2, 2), phases in the order (0, 0), (0, 1), (1, 0), (1, 1).
    bias : torch.Tensor or None
        shape (4 c_out,): the bias once per phase.
    """
    taps = torch.tensor(_PHASE_TAPS, dtype=weight.dtype, device=weight.device)
    kernels = torch.einsum("ary,oiyx,bcx->aboirc", taps, weight, taps).flatten(0, 2)
    return kernels, None if bias is None else bias.repeat(4)


def phase_conv(x: torch.Tensor, kernels: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
    """Upsample by nearest x2 and convolve, from the :func:`phase_kernels` of the convolution.

    Parameters
    ----------
    x : torch.Tensor
        shape (N, c_in, h, w).
    kernels, bias : torch.Tensor
        From :func:`phase_kernels`.

    Returns
    -------
    torch.Tensor
        shape (N, c_out, 2h, 2w).
    """
    height, width = x.shape[2], x.shape[3]
    # Output position (i + a, j + b) of phase (a, b) reads input rows i - 1 + a, i + a and columns
    # j - 1 + b, j + b of the padded map.
    phases = F.conv2d(x, kernels, bias, padding=1).split(kernels.shape[0] // 4, dim=1)
    return _interleave([[phases[2 * a + b][:, :, a : a + height, b : b + width] for b in (0, 1)] for a in (0, 1)])


def phase_conv_per_phase(
    x: torch.Tensor, kernels: tuple[torch.Tensor, ...], biases: tuple[torch.Tensor, ...] | None
) -> torch.Tensor:
    """:func:`phase_conv` as one convolution per phase, each over exactly the outputs it keeps.

    Parameters
    ----------
    x : torch.Tensor
        shape (N, c_in, h, w).
    kernels : tuple of torch.Tensor
        The four phases' kernels of :func:`phase_kernels`, in its order, each (c_out, c_in, 2, 2).
    biases : tuple of torch.Tensor or None
        Their biases, each (c_out,).

    Returns
    -------
    torch.Tensor
        shape (N, c_out, 2h, 2w).
    """
    phases = []
    for a in (0, 1):
        row = []
        for b in (0, 1):
            # Phase (a, b) reads input rows i - 1 + a, i + a and columns j - 1 + b, j + b: the map
            # padded by one on the top (left) for phase 0 and on the bottom (right) for phase 1.
            padded = F.pad(x, (1 - b, b, 1 - a, a))
            row.append(F.conv2d(padded, kernels[2 * a + b], None if biases is None else biases[2 * a + b]))
        phases.append(row)
    return _interleave(phases)


def _interleave(phases: list[list[torch.Tensor]]) -> torch.Tensor:
    """``phases[a][b]``, each (N, c, h, w), as one (N, c, 2h, 2w) map: row 2i + a, column 2j + b."""
    rows = [torch.stack(row, dim=-1) for row in phases]
    # (N, c, h, 2, w, 2) -> (N, c, 2h, 2w).
    return torch.stack(rows, dim=3).flatten(4, 5).flatten(2, 3)
