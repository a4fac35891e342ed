"""deepsmote.kernels: the k-NN and interpolation kernels of the sampler (numpy, and numba for large work).

`kneighbors` finds each code's exact nearest neighbours within its class, `NeighborRows` those of
the codes a job draws, as it draws them (`row_kernel` says where and in which arithmetic; numpy for
a job that draws few bases from a large class: `finds_rows_on_demand`), `kneighbors_of` those of
some codes among all codes (across classes);
`interpolate` makes the SMOTE points from draws the caller made. All raise plain ``ValueError`` on
bad input. Small work runs in numpy and large work in numba kernels, which import numba only when
they first run (see `set_num_threads` for their thread count); `preload_knn` starts that import
early, in a background thread, for a job whose classes will need it.

`deepsmote.kernels.winograd` holds the tile transforms of training's Winograd convolutions
(`deepsmote train --conv winograd`); the runtime does not use them, so they are not imported here.
"""

from .interpolate import interpolate
from .knn import kneighbors
from .knn_cross import kneighbors_of
from .knn_rows import NeighborRows, finds_rows_on_demand, row_kernel
from .preload import preload_knn
from .threads import set_num_threads

__all__ = [
    "NeighborRows",
    "finds_rows_on_demand",
    "interpolate",
    "kneighbors",
    "kneighbors_of",
    "preload_knn",
    "row_kernel",
    "set_num_threads",
]
