"""The DeepSMOTE over-sampler, with imbalanced-learn's conventions (``docs/design.md`` §7).

It is a scikit-learn estimator by protocol, not by inheritance: ``get_params``/``set_params`` (read
from ``__init__``'s signature, as ``BaseEstimator`` does), ``__sklearn_tags__`` and
``fit_resample`` are what ``sklearn.base.clone``, ``GridSearchCV`` and
``imblearn.pipeline.Pipeline`` use, so scikit-learn stays an optional extra of a torch-free
runtime whose other dependencies are five small packages.

Internal module: use the public names of :mod:`deepsmote.runtime`.
"""

from __future__ import annotations

import inspect
import os
import sys
from collections.abc import Callable, Iterator, Mapping
from typing import Any

import numpy as np
from deepsmote.kernels import preload_knn

from .bundle import CLASSIFIER_FILE, PRECISIONS, PROVIDERS, Bundle, Models, load_bundle, open_models
from .codes import LatentCache, codes_of
from .errors import BundleNotFoundError, DeepSMOTEError, InvalidInputError
from .gate import DEFAULT_MAX_DRAW_RATIO, check_ratio, check_threshold
from .latent_samplers import check_sampler
from .layout import ImageLayout
from .mixing import check_share, split
from .plan import DEFAULT_SHARD_SIZE
from .readers import label_values
from .remix import RemixSettings, check_remix_gate, one_hot
from .resize import check_image_shape
from .strategy import new_sample_counts
from .stream import ImageSource
from .synthesis import Synthesizer, draw_counts, encoded_classes

SamplingStrategy = str | float | Mapping[Any, int] | Callable[[np.ndarray], Mapping[Any, int]]
RandomState = int | np.random.RandomState | np.random.Generator | None


def seed_from(random_state: RandomState) -> int:
    """The job's integer seed: ``random_state`` itself, or one draw from a RandomState or Generator.

    Raises
    ------
    InvalidInputError
        For anything else, or a negative integer.
    """
    if random_state is None:
        return int(np.random.SeedSequence().entropy % 2**63)
    if isinstance(random_state, np.random.RandomState):
        return int(random_state.randint(0, 2**31 - 1))
    if isinstance(random_state, np.random.Generator):
        return int(random_state.integers(0, 2**63 - 1))
    if isinstance(random_state, bool) or not isinstance(random_state, int | np.integer) or random_state < 0:
        raise InvalidInputError(
            f"random_state must be a non-negative integer, a numpy RandomState or Generator, or None, "
            f"got {random_state!r}"
        )
    return int(random_state)


def _target(y: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
    """y as one label per sample, and the classes of a one-hot y (to encode the result alike).

    Raises
    ------
    InvalidInputError
        For a continuous, multilabel or multioutput target, as imbalanced-learn refuses them.
    """
    if y.dtype == object:
        # A categorical or object column: its values, as strings or numbers numpy can sort.
        y = np.asarray(y.tolist())
    if y.ndim == 2 and y.shape[1] == 1:
        y = y[:, 0]
    one_hot = None
    if y.ndim == 2:
        if not (np.isin(y, (0, 1)).all() and (y.sum(axis=1) == 1).all()):
            raise InvalidInputError("Multilabel and multioutput targets are not supported; give one label per sample")
        one_hot, y = np.arange(y.shape[1]), y.argmax(axis=1)
    if y.ndim != 1:
        raise InvalidInputError(f"y must have one label per sample, got shape {y.shape}")
    if y.dtype.kind == "f" and not np.array_equal(y, np.round(y)):
        raise InvalidInputError("Unknown label type: continuous; y must hold class labels (integers or strings)")
    return y, one_hot


def _refuse_sparse(X: Any) -> None:
    """A scipy sparse matrix or array is refused with a ValueError, as scikit-learn's dense-only estimators do."""
    sparse = sys.modules.get("scipy.sparse")
    if sparse is not None and sparse.issparse(X):
        raise InvalidInputError(
            f"X is a sparse {type(X).__name__}, but DeepSMOTE needs dense images (every pixel is an input of the "
            "encoder); pass X.toarray()"
        )


def _load(bundle: str | os.PathLike | Bundle) -> Bundle:
    """The ``bundle`` parameter as a checked bundle: a missing path is a ``FileNotFoundError``, any other
    refusal (not a bundle, a corrupt graph) a ``ValueError``, as scikit-learn raises for a bad parameter."""
    if isinstance(bundle, Bundle):
        return bundle
    if not isinstance(bundle, str | os.PathLike):
        raise InvalidInputError(f"`bundle` must be a path to a model bundle or a Bundle, got {type(bundle).__name__}")
    try:
        return load_bundle(bundle, lazy=True)
    except BundleNotFoundError:
        raise
    except InvalidInputError:
        raise
    except DeepSMOTEError as exc:
        raise InvalidInputError(str(exc)) from None


def _encode_target(y: np.ndarray, one_hot: np.ndarray | None) -> np.ndarray:
    return y if one_hot is None else (y[:, None] == one_hot[None, :]).astype(np.int64)


def _like(original: Any, result: np.ndarray) -> Any:
    """``result`` in the container of ``original``: list, pandas DataFrame or Series, or ndarray."""
    pandas = _pandas_of(original)
    if isinstance(original, list):
        return result.tolist()
    if pandas is None:
        return result
    if isinstance(original, pandas.Series):
        return pandas.Series(result, name=original.name).astype(original.dtype)
    frame = pandas.DataFrame(result.reshape(len(result), -1), columns=original.columns)
    return frame.astype(original.dtypes.to_dict())


def _pandas_of(value: Any) -> Any:
    """pandas, if ``value`` is one of its objects (pandas itself is never imported for this)."""
    pandas = sys.modules.get("pandas")
    return pandas if pandas is not None and isinstance(value, pandas.DataFrame | pandas.Series) else None


class DeepSMOTE:
    """Over-sample minority classes by SMOTE in a trained autoencoder's latent space.

    Parameters
    ----------
    bundle : str, path-like or Bundle
        A model bundle directory (``deepsmote train`` makes one); the only positional parameter.
    sampling_strategy : str, float, dict or callable, default 'auto'
        imbalanced-learn's meaning: ``'auto'`` (= ``'not majority'``), ``'minority'``,
        ``'not minority'``, ``'all'``, a float (two classes), ``{class: count after}``, or a
        callable ``y -> dict``.
    k_neighbors : int, default 5
        Neighbours within a class to interpolate towards.
    random_state : int, numpy RandomState or Generator, or None, default None
        Seed; the same seed gives the same bytes whatever ``batch_size`` or thread count. A
        RandomState or Generator gives one seed per ``fit`` (one draw from it).
    provider : {'auto', 'cpu', 'cuda', 'openvino'}, default 'auto'
        onnxruntime execution provider (``openvino`` needs onnxruntime-openvino, ``deepsmote[openvino]``).
    batch_size : int or None, default None
        Codes decoded per onnxruntime call; None takes the provider's default (16 on the CPU, fewer
        for images above 64x64x1; 256 on a GPU).
    n_threads : int or None, default None
        Threads for onnxruntime and the numba kernels; all cores when None.
    shard_size : int, default 1000
        Samples drawn from one seed; part of what fixes the output bytes.
    precision : {'fp32', 'fp16'}, default 'fp32'
        Decoder arithmetic; fp16 is for GPUs (a bundle exported before 0.9.0 also needs the
        ``onnx`` package).
    sampler : {'smote', 'borderline', 'adasyn', 'remix'}, default 'smote'
        Which codes serve as SMOTE bases: all of a class (``'smote'``), those in danger
        (Borderline-SMOTE-1) or those weighted by their share of other classes' neighbours (ADASYN),
        imbalanced-learn's definitions in code space (README, "Latent samplers"); or latent Remix
        (``'remix'``): each base mixed with a code of any class, with Remix's soft targets
        (``fit_resample(..., return_targets=True)``).
    filter_threshold : float or None, default None
        The quality gate: keep only candidates to which the bundle's classifier
        (``classifier.onnx``) gives at least this probability of their class, in (0, 1].
    max_draw_ratio : int, default 50
        The gate draws at most this many candidates per sample kept, then fails the class.
    synthetic_share : float, default 1.0
        Share of each class's new samples that is synthetic; the rest repeat its real images
        (drawn as random oversampling does) and come after the synthetic ones of their shard.
    remix_min_weight : float, default 0.5
        Latent Remix (``sampler='remix'``): the base's weight λ is drawn from U[remix_min_weight, 1).
    remix_kappa : float, default 3.0
        Latent Remix: the class-size ratio from which the hard-label rule applies.
    remix_tau : float, default 0.5
        Latent Remix: the larger class's weight under which the label is the smaller class's alone.
    remix_partner : {'uniform', 'nearest-other'}, default 'uniform'
        Latent Remix: the partner drawn from all training samples, or among the base's
        ``k_neighbors`` nearest codes of other classes.
    remix_base : {'smote', 'borderline', 'adasyn'}, default 'smote'
        Latent Remix: the bases drawn uniformly from the class, or with that latent sampler's weights.

    Attributes
    ----------
    sampling_strategy_ : dict
        Class → number of synthetic samples, for the classes that get any.
    classes_ : np.ndarray
        The distinct labels, in the order used for seeding.
    provider_ : str
        The onnxruntime provider the sessions run on.
    seed_ : int
        The seed used (drawn once when ``random_state`` is None).
    n_features_in_ : int
        Values per sample that ``fit`` saw (H·W·C, whatever X's layout).
    feature_names_in_ : np.ndarray
        X's column names, when X is a DataFrame whose column names are all strings.
    synthesizer_ : Synthesizer
        The fitted codes, neighbours and shard plan; turns a shard into images.
    """

    def __init__(
        self,
        bundle: str | os.PathLike | Bundle | None = None,
        *,
        sampling_strategy: SamplingStrategy = "auto",
        k_neighbors: int = 5,
        random_state: RandomState = None,
        provider: str = "auto",
        batch_size: int | None = None,
        n_threads: int | None = None,
        shard_size: int = DEFAULT_SHARD_SIZE,
        precision: str = "fp32",
        sampler: str = "smote",
        filter_threshold: float | None = None,
        max_draw_ratio: int = DEFAULT_MAX_DRAW_RATIO,
        synthetic_share: float = 1.0,
        remix_min_weight: float = 0.5,
        remix_kappa: float = 3.0,
        remix_tau: float = 0.5,
        remix_partner: str = "uniform",
        remix_base: str = "smote",
    ) -> None:
        self.bundle = bundle
        self.sampling_strategy = sampling_strategy
        self.k_neighbors = k_neighbors
        self.random_state = random_state
        self.provider = provider
        self.batch_size = batch_size
        self.n_threads = n_threads
        self.shard_size = shard_size
        self.precision = precision
        self.sampler = sampler
        self.filter_threshold = filter_threshold
        self.max_draw_ratio = max_draw_ratio
        self.synthetic_share = synthetic_share
        self.remix_min_weight = remix_min_weight
        self.remix_kappa = remix_kappa
        self.remix_tau = remix_tau
        self.remix_partner = remix_partner
        self.remix_base = remix_base

    # --- scikit-learn's estimator protocol ---------------------------------------------------

    @classmethod
    def _param_names(cls) -> list[str]:
        return [p for p in inspect.signature(cls.__init__).parameters if p != "self"]

    def get_params(self, deep: bool = True) -> dict[str, Any]:
        """The constructor's parameters by name (``deep`` is accepted for scikit-learn; none nest)."""
        return {name: getattr(self, name) for name in self._param_names()}

    def set_params(self, **params: Any) -> DeepSMOTE:
        """Set constructor parameters by name; returns self.

        Raises
        ------
        InvalidInputError
            For a name that is not a parameter.
        """
        valid = self._param_names()
        for name, value in params.items():
            if name not in valid:
                raise InvalidInputError(f"invalid parameter {name!r} for DeepSMOTE; valid parameters: {valid}")
            setattr(self, name, value)
        return self

    def __sklearn_tags__(self) -> Any:
        # Called by scikit-learn only, so it is there to import.
        from sklearn.utils import Tags, TargetTags

        try:  # imbalanced-learn's tags add what a sampler is (its checks read them)
            from imblearn.utils._tags import InputTags, SamplerTags
            from imblearn.utils._tags import Tags as SamplerEstimatorTags
        except ImportError:
            tags = Tags(estimator_type=None, target_tags=TargetTags(required=True))
        else:
            tags = SamplerEstimatorTags(
                estimator_type="sampler",
                target_tags=TargetTags(required=True),
                input_tags=InputTags(dataframe=True),
                sampler_tags=SamplerTags(sample_indices=False),
            )
        tags.input_tags.three_d_array = True
        tags.non_deterministic = self.random_state is None
        return tags

    def __repr__(self) -> str:
        changed = {k: v for k, v in self.get_params().items() if v is not _DEFAULTS.get(k) and v != _DEFAULTS.get(k)}
        return f"DeepSMOTE({', '.join(f'{k}={v!r}' for k, v in changed.items())})"

    # --- fitting -----------------------------------------------------------------------------

    def _check_params(self) -> None:
        if self.bundle is None:
            raise InvalidInputError("`bundle` is required: DeepSMOTE('model.bundle', ...)")
        for name in ("k_neighbors", "batch_size", "shard_size"):
            value = getattr(self, name)
            if name == "batch_size" and value is None:
                continue
            if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < 1:
                raise InvalidInputError(f"{name} must be a positive integer, got {value!r}")
        if self.n_threads is not None and (not isinstance(self.n_threads, int) or self.n_threads < 1):
            raise InvalidInputError(f"n_threads must be a positive integer or None, got {self.n_threads!r}")
        if self.provider not in PROVIDERS:
            raise InvalidInputError(f"provider must be one of {', '.join(PROVIDERS)}, got {self.provider!r}")
        if self.precision not in PRECISIONS:
            raise InvalidInputError(f"precision must be one of {', '.join(PRECISIONS)}, got {self.precision!r}")
        check_sampler(self.sampler)
        if isinstance(self.random_state, int | np.integer | bool):
            seed_from(self.random_state)  # refuses a bad one before any work
        check_threshold(self.filter_threshold)
        check_ratio(self.max_draw_ratio)
        check_share(self.synthetic_share)
        self._remix_settings()
        check_remix_gate(self.sampler, self.filter_threshold)

    def _remix_settings(self) -> RemixSettings:
        """The latent-Remix parameters, checked (they are checked whatever the sampler)."""
        return RemixSettings(
            self.remix_min_weight, self.remix_kappa, self.remix_tau, self.remix_partner, self.remix_base
        )

    def fit(self, X: np.ndarray | ImageSource | LatentCache, y: np.ndarray | None = None) -> DeepSMOTE:
        """Encode the classes that will grow and find their neighbours.

        Parameters
        ----------
        X : np.ndarray, ImageSource or LatentCache
            Images, shape (N, H, W), (N, H, W, C), torch's (N, C, H, W) or (N, H*W*C); integer 0..255 or
            float 0..1; dense (a scipy sparse X is refused with a ValueError). Or, the
            streaming form, DATA opened to be read in batches (``open_dataset``: only codes are kept)
            or a latent cache of this bundle (``read_latent_cache``); then y is omitted, the labels
            are DATA's, and ``classes_`` are DATA's label values in DATA's class order.
        y : np.ndarray
            Labels, shape (N,).

        Returns
        -------
        self

        Raises
        ------
        InvalidInputError
            A ``ValueError``: a bad parameter (``provider``, ``precision``, a path that is not a bundle
            ...) or a bad X or y.
        BundleNotFoundError
            A ``FileNotFoundError``: nothing at the ``bundle`` path.
        """
        self._check_params()
        _refuse_sparse(X)
        if isinstance(X, ImageSource | LatentCache):
            return self._fit_streamed(X, y)
        if y is None:
            raise InvalidInputError("y is required with an array X")
        self._inputs = (X, y)
        X = X.to_numpy() if _pandas_of(X) is not None else np.asarray(X)
        y, self._y_one_hot = _target(y.to_numpy() if _pandas_of(y) is not None else np.asarray(y))
        if len(y) != len(X):
            raise InvalidInputError(f"y must have shape ({len(X)},) to match X, got {y.shape}")
        if len(X) == 0:
            raise InvalidInputError("X is empty")
        if len(np.unique(y)) < 2:
            raise InvalidInputError("y holds one class; oversampling needs at least two classes")
        self.bundle_: Bundle = _load(self.bundle)
        self.layout_ = ImageLayout.of(X, self.bundle_.image_shape)
        self.n_features_in_ = int(np.prod(X.shape[1:]))
        self._set_feature_names(self._inputs[0])
        self.classes_, labels = np.unique(y, return_inverse=True)
        labels = labels.ravel()
        counts = np.bincount(labels, minlength=len(self.classes_))
        new = new_sample_counts(self.sampling_strategy, counts, list(self.classes_), y)
        self.sampling_strategy_ = {self.classes_[c].item(): int(n) for c, n in enumerate(new) if n > 0}
        self.seed_ = seed_from(self.random_state)
        models = self._open_models()
        self.synthesizer_ = Synthesizer.fit(
            models,
            self.layout_,
            X,
            labels,
            [str(c) for c in self.classes_],
            new,
            **self._synthesis_options(new),
        )
        self._X, self._y = X, y
        return self

    def _set_feature_names(self, X: Any) -> None:
        """``feature_names_in_`` for a DataFrame whose column names are all strings, as scikit-learn sets it."""
        if _pandas_of(X) is not None and hasattr(X, "columns") and all(isinstance(c, str) for c in X.columns):
            self.feature_names_in_ = np.asarray(X.columns, dtype=object)
        elif hasattr(self, "feature_names_in_"):
            del self.feature_names_in_

    def _synthesis_options(self, new: np.ndarray) -> dict[str, Any]:
        """The keyword arguments of :meth:`Synthesizer.from_codes` that come from the parameters."""
        return {
            "k_neighbors": self.k_neighbors,
            "seed": self.seed_,
            "shard_size": self.shard_size,
            "threads": self.n_threads,
            "batch_size": self.batch_size,
            "precision": self.precision,
            "sampler": self.sampler,
            "synthetic_counts": split(new, self.synthetic_share),
            "filter_threshold": self.filter_threshold,
            "max_draw_ratio": self.max_draw_ratio,
            "remix": self._remix_settings() if self.sampler == "remix" else None,
        }

    def _open_models(self) -> Models:
        """The bundle's sessions, with the classifier when the gate is on (refused without one)."""
        gate = self.filter_threshold is not None
        if gate and not self.bundle_.has_graph(CLASSIFIER_FILE):
            raise InvalidInputError(
                f"`filter_threshold` needs a classifier in the bundle and {self.bundle_.path} has none; add one with "
                "deepsmote.training.add_classifier (or 'deepsmote add-classifier BUNDLE DATA')"
            )
        models = open_models(self.bundle_, self.provider, self.n_threads, self.precision, classifier=gate)
        self.provider_ = models.provider
        return models

    def _fit_streamed(self, data: ImageSource | LatentCache, y: Any) -> DeepSMOTE:
        if y is not None:
            raise InvalidInputError("y must be omitted when X is DATA or CODES: their labels are used")
        self.bundle_ = _load(self.bundle)
        if isinstance(data, LatentCache):
            data.check_bundle(self.bundle_)
        check_image_shape(data.image_shape, self.bundle_.image_shape)
        self.layout_ = ImageLayout(data.item_shape, np.dtype(np.uint8), self.bundle_.image_shape)
        self.n_features_in_ = int(np.prod(data.item_shape))
        self.classes_ = label_values(data.classes)
        counts = data.class_counts()
        new = new_sample_counts(self.sampling_strategy, counts, list(self.classes_), self.classes_[data.labels])
        self.sampling_strategy_ = {self.classes_[c].item(): int(n) for c, n in enumerate(new) if n > 0}
        self.seed_ = seed_from(self.random_state)
        synthetic = split(new, self.synthetic_share)
        encoded = encoded_classes(new, synthetic, self.sampler)
        # A class that takes the numba k-NN has numba loaded while the sessions are built and DATA
        # is encoded, which release the GIL.
        preload_knn(counts[encoded], draw_counts(synthetic, self.filter_threshold, self.max_draw_ratio)[encoded])
        models = self._open_models()
        if isinstance(data, LatentCache) and self.synthetic_share != 1:
            raise InvalidInputError(
                "`synthetic_share` repeats real images, which CODES does not hold (codes only); give X the images "
                "(open_dataset(DATA))"
            )
        codes, members, _ = codes_of(models, data, encoded)
        self.synthesizer_ = Synthesizer.from_codes(
            models,
            self.layout_,
            codes,
            members,
            [str(c) for c in self.classes_],
            new,
            source=data if isinstance(data, ImageSource) else None,
            **self._synthesis_options(new),
        )
        self._inputs, self._y_one_hot = (data, None), None
        self._X, self._y = data, self.classes_[data.labels]
        return self

    # --- sampling ----------------------------------------------------------------------------

    def iter_synthetic(
        self, X: np.ndarray | None = None, y: np.ndarray | None = None
    ) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """Yield the synthetic samples one shard at a time, for jobs larger than memory.

        Parameters
        ----------
        X, y : np.ndarray, optional
            Fit on these first; omit them after :meth:`fit`.

        Yields
        ------
        X_new : np.ndarray
            Shape (m, *X.shape[1:]), X's dtype.
        y_new : np.ndarray
            Shape (m,), y's dtype.
        """
        if X is not None or y is not None:
            self.fit(X, y)
        elif not hasattr(self, "synthesizer_"):
            raise DeepSMOTEError("call fit(X, y) first, or pass X and y")
        for images, labels, _ in self._iter_synthetic(self.synthesizer_):
            yield images, labels

    def fit_resample(
        self, X: np.ndarray | ImageSource, y: np.ndarray | None = None, *, return_targets: bool = False
    ) -> tuple[np.ndarray, np.ndarray] | tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Return the originals followed by the new samples (synthetic, and under mixing real repeats).

        Parameters
        ----------
        X : np.ndarray
            Shape (N, H, W), (N, H, W, C), torch's (N, C, H, W) or (N, H*W*C); integer 0..255 or float 0..1.
        y : np.ndarray
            Shape (N,).
        return_targets : bool, default False
            Also return each sample's soft target (latent Remix's labels; one-hot for the other
            samplers and for real samples).

        Returns
        -------
        X_resampled : np.ndarray or pandas.DataFrame
            Shape (N + M, *X.shape[1:]), X's dtype; a DataFrame with X's columns when X is one.
        y_resampled : np.ndarray or pandas.Series
            Shape (N + M,), y's dtype; a Series with y's name and dtype (categories kept) when y is
            one. Under latent Remix, each synthetic sample's base class.
        targets : np.ndarray
            float32, shape (N + M, K), rows summing to 1, columns in ``classes_`` order; only with
            ``return_targets``.
        """
        self.fit(X, y)
        return self.resample(return_targets=return_targets)

    def resample(
        self, epoch: int = 0, *, return_targets: bool = False
    ) -> tuple[np.ndarray, np.ndarray] | tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The fitted data resampled with epoch ``epoch``'s draws: :meth:`fit_resample`'s result
        without fitting again.

        Epoch 0 gives the same bytes as ``fit_resample``; each epoch e > 0 its own fresh draws (bases,
        partners, gaps, repeats; see ``DeepSMOTEStream.set_epoch``), a function of the seed and e, so
        a training loop can draw a new synthetic set every epoch from one fit.

        Parameters
        ----------
        epoch : int, default 0
        return_targets : bool, default False
            As for :meth:`fit_resample`.
        """
        if not hasattr(self, "synthesizer_"):
            raise DeepSMOTEError("call fit(X, y) first")
        if isinstance(self._X, LatentCache):
            raise InvalidInputError(
                "fit_resample returns the originals, which CODES does not hold (codes only); give X the images "
                "(open_dataset(DATA)), or use iter_synthetic for the synthetic samples alone"
            )
        if isinstance(self._X, ImageSource):
            _check_fits_in_memory(self._X.take([0]), len(self._X) + self.synthesizer_.shards.total - 1)
            self._X = self._X.load().images
        _check_fits_in_memory(self._X, self.synthesizer_.shards.total)
        synthesizer = self.synthesizer_.for_epoch(epoch)
        parts = list(self._iter_synthetic(synthesizer))
        X_res = np.concatenate([self._X, *(p[0] for p in parts)])
        y_res = np.concatenate([self._y, *(p[1] for p in parts)])
        result = _like(self._inputs[0], X_res), _like(self._inputs[1], _encode_target(y_res, self._y_one_hot))
        if not return_targets:
            return result
        labels = np.searchsorted(self.classes_, self._y) if len(self._y) else np.zeros(0, dtype=np.int64)
        real = one_hot(labels, len(self.classes_))
        return (*result, np.concatenate([real, *(p[2] for p in parts)]))

    def _iter_synthetic(self, synthesizer: Synthesizer) -> Iterator[tuple[np.ndarray, np.ndarray, np.ndarray]]:
        """Each shard's images, labels (``classes_`` values) and soft targets (one-hot without Remix)."""
        for shard in synthesizer.shards:
            targets = synthesizer.shard_targets(shard)
            if targets is None:
                targets = one_hot(np.full(shard.count, shard.class_index), len(self.classes_))
            labels = np.full(shard.count, self.classes_[shard.class_index], dtype=self.classes_.dtype)
            yield synthesizer.images(shard), labels, targets


def _check_fits_in_memory(X: np.ndarray, new: int) -> None:
    """Refuse, before any sample is made, a result larger than this machine's memory."""
    need = (len(X) + new) * X[0].nbytes if len(X) else 0
    try:
        memory = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError):
        return
    if need > memory:
        raise DeepSMOTEError(
            f"fit_resample would return {len(X) + new} samples, {need / 1e9:.3g} GB, more than this machine's "
            f"{memory / 1e9:.3g} GB of memory; ask for fewer with `sampling_strategy`, or use iter_synthetic"
        )


_DEFAULTS = {name: p.default for name, p in inspect.signature(DeepSMOTE.__init__).parameters.items() if name != "self"}
