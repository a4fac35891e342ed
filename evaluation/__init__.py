"""deepsmote.evaluation: the paper's evaluation protocol, its baselines and sample quality.

- :mod:`.datasets` (numpy only): the seeded per-class subsets of Table I;
- :mod:`.metrics` (numpy only): ACSA, macro geometric mean, macro F1, per-class recall;
- :mod:`.quality` (numpy only): Fréchet distance and improved precision/recall;
- :mod:`.classifiers` (torch): the small CNN and ResNet-18 presets, training, prediction;
- :mod:`.protocol` (torch): oversampling with each method, training, scoring, tables;
- :mod:`.commands`: `deepsmote dataset imbalance` and `deepsmote evaluate`.

It uses the runtime (reading DATA, oversampling with a bundle) and training (the device choice)
alike, so it is a room of its own beside them (docs/design.md §5). Nothing torch-based is imported
here, so this package and its numpy-only modules load without torch: `deepsmote dataset` runs
with the runtime alone.
"""

from .datasets import PAPER_TEST_COUNTS, PAPER_TRAIN_COUNTS, imbalance, write_imbalanced
from .metrics import Scores, scores
from .quality import frechet_distance, precision_recall

__all__ = [
    "PAPER_TEST_COUNTS",
    "PAPER_TRAIN_COUNTS",
    "Scores",
    "frechet_distance",
    "imbalance",
    "precision_recall",
    "scores",
    "write_imbalanced",
]
