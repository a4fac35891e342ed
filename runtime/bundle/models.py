"""Encoder and decoder of a verified bundle, run by onnxruntime.

On the CPU each session runs single-threaded and the batches of one call run concurrently on
a pool of threads (onnxruntime releases the GIL and allows concurrent ``run`` calls). Measured
on this project's 2-core machines, one single-threaded session per core spent ~20% less CPU
per image than one session with two intra-op threads, whose threads synchronise inside every
transposed convolution. Every batch is computed alone, so the result is the same bytes for any
number of threads.

A graph's signature was checked at load, but a graph can still lie when it runs (a symbolic
dimension that resolves to anything, an output that ignores the batch, NaN): every output of
every call must have exactly the expected shape and finite values, and a failure inside
onnxruntime is a one-line :class:`DeepSMOTEError` naming the graph.

Decoding on the CPU runs in calls of :data:`CPU_DECODE_BATCH` codes by default: the paper
model's ``decoder_cpu.onnx`` of bundles exported before 0.12.0 makes a 784 KB column matrix per
code (width 64) for its ``Col2Im``, and at 16 codes the calls running at once keep theirs in a
32 MiB L3. On a 2-core AVX-512 EPYC it decoded 1.3-1.4x the images/s of 32 codes (32 had been
~10% faster than 256 on a Xeon), and 8 to 16 measured alike; the Winograd graph of 0.12.0 ran
fastest at 16 too, on the EPYC Zen 3; the resize-conv graphs at 28x28 measured the same at 12, 16 and 32. Large
images take fewer codes per call (:func:`default_decode_batch`). A call too small to keep every
thread busy is split evenly.

Where a pixel session is open (on CUDA by default), `Models.decode_pixels` converts the decoded
images to uint8 inside onnxruntime, on the decoder's device (:mod:`.pixel_session`); elsewhere
numpy converts them. The bytes are the same either way.

Encoding runs in calls of :func:`default_encode_batch` images, a size set by the provider and the
image size alone, so that the codes never depend on a caller's batch size or thread count. On the
CPU large images take fewer per call: each concurrent call holds its float32 input and the
encoder's activations (at 128x128x3 a call of 256 images held 48 MiB of input and 96 MiB
above it; one of 21, 4 and 8 MiB).

Internal module: use the public names of :mod:`deepsmote.runtime.bundle`.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..errors import DeepSMOTEError
from ..pixels import from_model
from .loading import Bundle
from .manifest import (
    CLASSIFIER_FILE,
    CLASSIFIER_INPUT,
    CPU_DECODER_FILE,
    DECODER_FILE,
    DECODER_INPUT,
    DECODER_OUTPUT,
    ENCODER_FILE,
    ENCODER_INPUT,
    FP16_DECODER_FILE,
)
from .pixel_session import DEVICES, FINITE_CHECK, PIXEL_GRAPH_FILE, PIXEL_INPUT, PIXEL_OUTPUT, pixel_graph
from .precision import decoder_graph
from .session import (
    CPU_PROVIDER,
    CUDA_DETERMINISTIC,
    CUDA_FAST,
    OPENVINO_PROVIDER,
    RunTerminated,
    await_stop,
    create_session,
    resolve_provider,
    run_options,
)

# Codes per onnxruntime decoder call when the caller does not choose.
CPU_DECODE_BATCH = 16
CPU_DECODE_VALUES = 1 << 17
GPU_DECODE_BATCH = 256
# OpenVINO runs one session's calls in turn on every thread, so a call is larger: the paper
# decoder gave 807 / 835 / 854 images/s at 16 / 64 / 256 codes on a 2-core Xeon.
OPENVINO_DECODE_BATCH = 256
OPENVINO_DECODE_VALUES = 1 << 18
# The providers that run on the host's CPU cores and memory.
HOST_PROVIDERS = (CPU_PROVIDER, OPENVINO_PROVIDER)
# The end of the message when the package's own pixel graph fails: not the bundle's fault.
REINSTALL = "the deepsmote install is broken: pip install --force-reinstall deepsmote"
# Images per onnxruntime encoder call; on the CPU at most CPU_ENCODE_VALUES pixel values per call.
ENCODE_BATCH = 256
CPU_ENCODE_VALUES = 1 << 20


@dataclass
class Models:
    """The two sessions of a bundle.

    Attributes
    ----------
    bundle : Bundle
    encoder : onnxruntime.InferenceSession or None
        None where it was not opened (``open_models(..., encoder=False)``): a job from a latent cache.
    decoder : onnxruntime.InferenceSession
    provider : str
        The onnxruntime provider the sessions run on.
    workers : int
        Batches that run at once: one per CPU thread, 1 on a GPU.
    decoder_file : str
        The bundle file the decoder session runs, for messages.
    classifier : onnxruntime.InferenceSession or None
        The bundle's quality-gate classifier, when opened (``open_models(..., classifier=True)``).
    pixels : onnxruntime.InferenceSession or None
        The session of ``pixels.onnx`` that `decode_pixels` runs on the decoder's output where it
        lies, when opened (``open_models(..., pixels=True)``, the default on CUDA).
    pool : ThreadPoolExecutor or None
        Runs batches concurrently when ``workers > 1``; None runs them in turn.
    """

    bundle: Bundle
    encoder: Any
    decoder: Any
    provider: str
    workers: int = 1
    decoder_file: str = DECODER_FILE
    classifier: Any = None
    pixels: Any = None
    pool: ThreadPoolExecutor | None = field(init=False, default=None, repr=False)

    def __post_init__(self) -> None:
        if self.workers > 1:
            self.pool = ThreadPoolExecutor(self.workers, thread_name_prefix="deepsmote-ort")

    @property
    def encode_batch(self) -> int:
        """Images per encoder call: :func:`default_encode_batch` of this provider and image size."""
        return default_encode_batch(self.provider, self.bundle.image_shape)

    def encode(self, x: np.ndarray, batch_size: int | None = None) -> np.ndarray:
        """Codes of images.

        Parameters
        ----------
        x : np.ndarray
            float32, shape (N, C, H, W), values in [-1, 1].
        batch_size : int, optional
            Images per onnxruntime call; :attr:`encode_batch` when None.

        Returns
        -------
        np.ndarray
            float32, shape (N, Z).
        """
        if self.encoder is None:
            raise ValueError("the encoder session was not opened (open_models(..., encoder=True))")
        batch = batch_size or self.encode_batch
        return self._run(self.encoder, ENCODER_FILE, ENCODER_INPUT, x, batch, (self.bundle.latent_dim,))

    def decode(self, z: np.ndarray, batch_size: int | None = None) -> np.ndarray:
        """Images of codes.

        Parameters
        ----------
        z : np.ndarray
            float32, shape (N, Z).
        batch_size : int, optional
            Codes per onnxruntime call; :func:`default_decode_batch` when None.

        Returns
        -------
        np.ndarray
            float32, shape (N, C, H, W), values in [-1, 1].
        """
        batch = self._decode_batch(len(z), batch_size)
        return self._run(self.decoder, self.decoder_file, DECODER_INPUT, z, batch, self.bundle.image_shape)

    def decode_pixels(self, z: np.ndarray, batch_size: int | None = None) -> np.ndarray:
        """uint8 images of codes: the bytes of ``from_model(decode(z), grayscale_2d=False)``.

        Parameters
        ----------
        z : np.ndarray
            float32, shape (N, Z).
        batch_size : int, optional
            Codes per onnxruntime call, as in :meth:`decode`.

        Returns
        -------
        np.ndarray
            uint8, shape (N, H, W, C).
        """
        if self.pixels is None:
            return from_model(self.decode(z, batch_size=batch_size), grayscale_2d=False)
        channels, height, width = self.bundle.image_shape
        out = np.empty((len(z), height, width, channels), dtype=np.uint8)
        where = f"{self.bundle.path}/{self.decoder_file}"
        device = DEVICES[self.provider]
        batch = self._decode_batch(len(z), batch_size)

        def run_batch(start: int) -> None:
            chunk = np.ascontiguousarray(z[start : start + batch], dtype=np.float32)
            decoded = self.decoder.io_binding()
            decoded.bind_cpu_input(DECODER_INPUT, chunk)
            decoded.bind_output(DECODER_OUTPUT, device)
            _reported(where, self.decoder.run_with_iobinding, decoded)
            image = decoded.get_outputs()[0]
            _check_output(where, len(chunk), self.bundle.image_shape, image.data_type(), tuple(image.shape()))
            converted = self.pixels.io_binding()
            converted.bind_ortvalue_input(PIXEL_INPUT, image)
            converted.bind_output(PIXEL_OUTPUT, "cpu")
            converted.bind_output(FINITE_CHECK, "cpu")
            _reported(f"deepsmote's {PIXEL_GRAPH_FILE}", self.pixels.run_with_iobinding, converted, fix=REINSTALL)
            pixels, check = converted.copy_outputs_to_cpu()
            if not np.isfinite(check):
                raise DeepSMOTEError(f"{where}: returned NaN or inf for a batch of {len(chunk)}; the bundle is broken")
            out[start : start + len(chunk)] = pixels

        self._each_batch(len(z), batch, run_batch)
        return out

    def classify(self, x: np.ndarray, batch_size: int) -> np.ndarray:
        """Class probabilities of images, from the bundle's classifier.

        Parameters
        ----------
        x : np.ndarray
            float32, shape (N, C, H, W), values in [-1, 1].
        batch_size : int
            Images per onnxruntime call.

        Returns
        -------
        np.ndarray
            float32, shape (N, K), K the bundle's classes.
        """
        if self.classifier is None:
            raise ValueError("the classifier session was not opened (open_models(..., classifier=True))")
        shape = (len(self.bundle.classes),)
        return self._run(self.classifier, CLASSIFIER_FILE, CLASSIFIER_INPUT, x, batch_size, shape)

    def _decode_batch(self, n: int, batch_size: int | None) -> int:
        """Codes per decoder call for ``n`` codes: ``batch_size`` or the provider's default, and
        fewer than one call per thread spread over all threads (the bytes do not depend on the
        batch size, a tested property of every decoder we export)."""
        default = default_decode_batch(self.provider, self.bundle.image_shape)
        return max(1, min(batch_size or default, -(-n // self.workers)))

    def _each_batch(self, n: int, batch_size: int, run_batch: Callable[[int], None]) -> None:
        """``run_batch(start)`` for the start of every batch of ``n`` items, on the pool where there is one."""
        starts = range(0, n, batch_size)
        try:
            if self.pool is None or len(starts) == 1:
                for start in starts:
                    run_batch(start)
            else:
                # list() re-raises the first error of any batch.
                list(self.pool.map(run_batch, starts))
        except RunTerminated:
            # A signal ended the runs: its handler raises on this thread, as it would have
            # between two calls, so the command stops as a signal stops it.
            await_stop()
            raise

    def _run(
        self, session: Any, graph: str, name: str, x: np.ndarray, batch_size: int, item_shape: tuple[int, ...]
    ) -> np.ndarray:
        out = np.empty((x.shape[0], *item_shape), dtype=np.float32)
        where = f"{self.bundle.path}/{graph}"

        def run_batch(start: int) -> None:
            chunk = np.ascontiguousarray(x[start : start + batch_size], dtype=np.float32)
            result = _reported(where, session.run, None, {name: chunk})[0]
            if not isinstance(result, np.ndarray):
                raise DeepSMOTEError(
                    f"{where}: returned {type(result).__name__} for a batch of {len(chunk)}, "
                    f"expected float32 {(len(chunk), *item_shape)}; the bundle does not meet the contract"
                )
            _check_output(where, len(chunk), item_shape, str(result.dtype), result.shape)
            if not np.isfinite(result).all():
                raise DeepSMOTEError(f"{where}: returned NaN or inf for a batch of {len(chunk)}; the bundle is broken")
            out[start : start + len(chunk)] = result

        self._each_batch(x.shape[0], batch_size, run_batch)
        return out


def _reported(where: str, run: Callable[..., Any], *args: Any, fix: str = "the bundle is broken") -> Any:
    """``run(*args, run_options)``, an onnxruntime failure turned into a one-line
    :class:`DeepSMOTEError` naming ``where`` and ending in ``fix``; a run ended by
    :func:`~.session.terminate_runs` raises :class:`~.session.RunTerminated`."""
    with run_options() as options:
        try:
            return run(*args, options)
        except Exception as exc:  # onnxruntime's run-time errors share no base class but Exception
            if options.terminate:
                raise RunTerminated(f"{where}: stopped by a signal") from None
            reason = " ".join(str(exc).split())[:300]
            raise DeepSMOTEError(f"{where}: onnxruntime failed running the graph ({reason}); {fix}") from None


def _check_output(where: str, batch: int, item_shape: tuple[int, ...], dtype: str, shape: tuple[int, ...]) -> None:
    """Refuse an output that is not float32 of exactly (batch, *item_shape): no broadcasting, so a
    graph that ignores the batch must not fill it. ``dtype`` is numpy's or onnxruntime's name."""
    expected = (batch, *item_shape)
    if tuple(shape) != expected or dtype not in ("float32", "tensor(float)"):
        found = f"{'float32' if dtype == 'tensor(float)' else dtype} {tuple(shape)}"
        raise DeepSMOTEError(
            f"{where}: returned {found} for a batch of {batch}, expected float32 {expected}; "
            "the bundle does not meet the contract"
        )


def default_decode_batch(provider: str, image_shape: tuple[int, ...] | None = None) -> int:
    """Codes per decoder call on ``provider`` (an onnxruntime provider name) when not chosen.

    On the CPU, fewer for large images, so that a call decodes at most :data:`CPU_DECODE_VALUES`
    pixel values (16 codes up to 8,192 values per image, such as 64x64x1; 10 at 64x64x3, 2 at
    128x128x3). Each concurrent call holds its layers' activations (at 128x128x3 and 32 codes,
    about 200 MB), and smaller calls measured as fast or faster at 128x128x3
    (``benchmarks/generator_throughput.py``).
    """
    values = int(np.prod(image_shape)) if image_shape is not None else 1
    if provider == OPENVINO_PROVIDER:
        return max(1, min(OPENVINO_DECODE_BATCH, OPENVINO_DECODE_VALUES // values))
    if provider != CPU_PROVIDER:
        return GPU_DECODE_BATCH
    return max(1, min(CPU_DECODE_BATCH, CPU_DECODE_VALUES // values))


def default_encode_batch(provider: str, image_shape: tuple[int, ...]) -> int:
    """Images per encoder call on ``provider`` (an onnxruntime provider name) for images of ``image_shape``.

    :data:`ENCODE_BATCH`; on the CPU fewer for large images, so that a call reads at most
    :data:`CPU_ENCODE_VALUES` pixel values (256 up to 64x64x1 and 32x32x3, 85 at 64x64x3, 21 at
    128x128x3). The codes of an exported encoder do not depend on its call size (tested), so
    bundles encoded before this cap give the same codes.
    """
    if provider not in HOST_PROVIDERS:
        return ENCODE_BATCH
    return max(1, min(ENCODE_BATCH, CPU_ENCODE_VALUES // int(np.prod(image_shape))))


def open_models(
    bundle: Bundle,
    provider: str = "auto",
    threads: int | None = None,
    precision: str = "fp32",
    *,
    encoder: bool = True,
    classifier: bool = False,
    pixels: bool | None = None,
) -> Models:
    """Build and check the sessions of ``bundle``.

    Parameters
    ----------
    bundle : Bundle
    provider : {'auto', 'cpu', 'cuda', 'openvino'}
    threads : int, optional
        CPU threads running batches concurrently (``openvino``: the threads of its one session,
        whose calls run in turn); all cores when None.
    precision : {'fp32', 'fp16'}
        Arithmetic of the decoder (see :mod:`deepsmote.runtime.precision`). In fp32 on the CPU
        the bundle's ``decoder_cpu.onnx`` runs when it has one.
    encoder : bool
        Open the encoder. On the CPU a caller that only decodes (a job from a latent cache, a
        worker) leaves it closed: building it costs 0.09 s of a core at paper size, taken from
        the start-up work beside it. On a GPU it is always opened: it decides the provider.
    classifier : bool
        Also open ``classifier.onnx`` (the quality gate); the bundle must have one.
    pixels : bool, optional
        Open the pixel session, with which `Models.decode_pixels` converts to uint8 on the
        decoder's device (the same bytes as numpy's conversion); default: on CUDA, where it saves
        the host three quarters of the bytes and the conversion, not on the CPU, where numpy's
        conversion is a small part of decoding and the batches already fill every core.

    Raises
    ------
    DeepSMOTEError
        If the provider is missing or onnxruntime cannot load a graph. The graphs' names and
        shapes were checked by :func:`load_bundle`.
    """
    resolved = resolve_provider(provider)
    on_cpu = resolved in HOST_PROVIDERS
    # onnxruntime's CPU provider: one single-threaded run per thread at once; OpenVINO runs a
    # session's calls in turn (two at once on one thread each gave half the images/s of one call
    # on two), so one call at a time on every thread.
    workers = (threads or os.cpu_count() or 1) if resolved == CPU_PROVIDER else 1
    session_threads = 1 if resolved == CPU_PROVIDER else threads
    if classifier and not bundle.has_graph(CLASSIFIER_FILE):
        raise DeepSMOTEError(f"{bundle.path} has no {CLASSIFIER_FILE}")
    if on_cpu:
        # A host provider does not fall back (OpenVINO's fallback is an error in create_session),
        # so every graph is known before a session is built, and the sessions are built at once,
        # each graph read and checked on its session's thread (a lazy bundle's): hashing and
        # onnxruntime's optimization of a graph (0.09 s each at paper size on a 2-core EPYC)
        # release the GIL, as a run does.
        used = resolved
        decoder_file, decoder_bytes = _decoder_to_run(bundle, used, precision)
        graphs: list[Callable[[], bytes]] = [lambda: bundle.encoder_bytes] if encoder else []
        graphs += [decoder_bytes]
        graphs += [lambda: bundle.graph(CLASSIFIER_FILE)] if classifier else []
        converts = _converts_in_session(used) if pixels is None else pixels
        graphs += [pixel_graph] if converts else []
        with ThreadPoolExecutor(len(graphs), thread_name_prefix="deepsmote-session") as pool:
            futures = [pool.submit(lambda g=graph: create_session(g(), provider, session_threads)) for graph in graphs]
            # In the graphs' order, so the encoder's error is the one reported where several fail.
            sessions = iter([future.result()[0] for future in futures])
        encoder_session = next(sessions) if encoder else None
        decoder = next(sessions)
        gate = next(sessions) if classifier else None
        pixel_session = next(sessions) if converts else None
    else:
        # In turn: the decoder's graph depends on where the encoder's session really runs.
        encoder_session, used = create_session(bundle.encoder_bytes, provider, session_threads)
        decoder_file, decoder_bytes = _decoder_to_run(bundle, used, precision)
        options = CUDA_FAST if precision == "fp16" else CUDA_DETERMINISTIC
        decoder, _ = create_session(decoder_bytes(), provider, session_threads, options)
        gate = create_session(bundle.graph(CLASSIFIER_FILE), provider, session_threads)[0] if classifier else None
        converts = _converts_in_session(used) if pixels is None else pixels
        pixel_session = create_session(pixel_graph(), provider, session_threads)[0] if converts else None
    return Models(bundle, encoder_session, decoder, used, workers, decoder_file, gate, pixel_session)


def _converts_in_session(used: str) -> bool:
    """Whether `open_models` opens the pixel session by default on provider ``used``: on CUDA."""
    return used not in HOST_PROVIDERS


def _decoder_to_run(bundle: Bundle, used: str, precision: str) -> tuple[str, Callable[[], bytes]]:
    """The decoder's file (named in errors) and what gives the graph to build its session of, on
    provider ``used`` (a lazy bundle reads and checks it when that is called).

    fp32 on the CPU runs ``decoder_cpu.onnx`` where the bundle has one: an arrangement for
    onnxruntime's CPU kernels (Col2Im, which it runs on the CPU only, or Winograd products). fp16
    runs the bundle's ``decoder_fp16.onnx``, or ``decoder.onnx`` converted now for a bundle exported
    before 0.9.0 (which needs the onnx package, whose import and the conversion cost 1.2-2.8 s at
    paper size).
    """
    if precision == "fp16" and bundle.has_graph(FP16_DECODER_FILE):
        return FP16_DECODER_FILE, lambda: bundle.graph(FP16_DECODER_FILE)
    if used == CPU_PROVIDER and precision == "fp32" and bundle.has_graph(CPU_DECODER_FILE):
        return CPU_DECODER_FILE, lambda: bundle.graph(CPU_DECODER_FILE)
    return DECODER_FILE, lambda: decoder_graph(bundle.decoder_bytes, precision)
