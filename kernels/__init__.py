"""deepsmote.kernels: the numba kernels of the sampler (numpy and numba only).

`kneighbors` finds each code's exact nearest neighbours within its class; `interpolate` makes the
SMOTE points from draws the caller made. Both raise plain ``ValueError`` on bad input.
"""

from .interpolate import interpolate
from .knn import kneighbors

__all__ = ["interpolate", "kneighbors"]
