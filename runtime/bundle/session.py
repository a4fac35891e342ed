"""The one place that builds onnxruntime sessions.

``provider`` is ``auto`` (CUDA when onnxruntime-gpu can run it, else CPU), ``cpu``, ``cuda``
or ``openvino`` (the OpenVINO execution provider of the onnxruntime-openvino package, on the CPU:
one session on every thread, float32). A provider that is asked for and missing is an error that
lists the available ones, and the provider a session really runs on is read back, so a silent
fallback is caught.

Every run takes its ``RunOptions`` from :func:`run_options`, which keeps the runs in flight, so
that :func:`terminate_runs` (the CLI calls it from a thread when SIGINT or SIGTERM arrives) ends
each of them within onnxruntime, and any started after it at once: a graph that runs for ever
(a ``Loop`` of 10^15 steps) cannot keep a stopped command from exiting.

Internal module: use the public names of :mod:`deepsmote.runtime.bundle`.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, Literal

from ..errors import DeepSMOTEError, InvalidInputError

Provider = Literal["auto", "cpu", "cuda", "openvino"]
PROVIDERS: tuple[str, ...] = ("auto", "cpu", "cuda", "openvino")
CPU_PROVIDER = "CPUExecutionProvider"
OPENVINO_PROVIDER = "OpenVINOExecutionProvider"
_ORT_NAMES = {"cpu": CPU_PROVIDER, "cuda": "CUDAExecutionProvider", "openvino": OPENVINO_PROVIDER}
_INSTALL_HINT = "install one of: pip install 'deepsmote[cpu]'  or  pip install 'deepsmote[gpu]'"
_MISSING_HINTS = {
    "cuda": " (install deepsmote[gpu], i.e. onnxruntime-gpu, and a CUDA driver)",
    "openvino": " (install deepsmote[openvino], i.e. onnxruntime-openvino, in place of deepsmote[cpu])",
}

log = logging.getLogger(__name__)


def import_onnxruntime() -> Any:
    """Import onnxruntime, or fail with the install hint."""
    try:
        import onnxruntime
    except ImportError:
        raise DeepSMOTEError(f"onnxruntime is not installed; {_INSTALL_HINT}") from None
    return onnxruntime


def provider_option(used: str) -> str:
    """The ``provider`` option that asks for the onnxruntime provider ``used`` (``cpu`` for any other)."""
    return next((option for option, name in _ORT_NAMES.items() if name == used), "cpu")


def resolve_provider(provider: str) -> str:
    """The onnxruntime provider name for ``provider``.

    Raises
    ------
    DeepSMOTEError
        If ``provider`` is unknown, or asked for explicitly and not available.
    """
    ort = import_onnxruntime()
    available = ort.get_available_providers()
    if provider not in PROVIDERS:
        raise InvalidInputError(f"`provider` must be one of {', '.join(PROVIDERS)}, got '{provider}'")
    if provider == "auto":
        # Never OpenVINO: it decodes the default resize-conv model at 0.5-0.6x the CPU provider's
        # rate (the paper's model at 1.13-1.17x), so it is only taken when asked for.
        return _ORT_NAMES["cuda"] if _ORT_NAMES["cuda"] in available else CPU_PROVIDER
    wanted = _ORT_NAMES[provider]
    if wanted not in available:
        hint = _MISSING_HINTS.get(provider, "")
        raise DeepSMOTEError(f"Provider {wanted} is not available{hint}. Available providers: {available}")
    return wanted


# cuDNN convolution algorithms for the CUDA provider. Measured on an H200 with the paper-size
# decoder: 'HEURISTIC' gave fp32 results that changed from run to run and with the batch size
# (TF32 and split reductions, up to 7e-4), 'DEFAULT' gave the same bytes every time at 33,000
# images/s; in fp16, 'HEURISTIC' gave the same bytes every time and for every batch size at
# 311,000 images/s.
CUDA_DETERMINISTIC = {"cudnn_conv_algo_search": "DEFAULT", "use_tf32": "0"}
CUDA_FAST = {"cudnn_conv_algo_search": "HEURISTIC"}
EXTERNAL_DATA_FOLDER_KEY = "session.model_external_initializers_file_folder_path"
# Below a device file: no path under it exists (ENOTDIR), and onnxruntime refuses absolute
# locations and those that climb out of the folder.
NO_EXTERNAL_DATA_FOLDER = os.path.join(os.devnull, "no-external-data")


def create_session(
    model: bytes, provider: str = "auto", threads: int | None = None, cuda_options: dict[str, str] | None = None
) -> tuple[Any, str]:
    """Build an ``InferenceSession`` from serialized ONNX bytes.

    Parameters
    ----------
    model : bytes
        The ONNX graph. Any external-data reference it holds (the bundle check refuses them) is
        resolved against :data:`NO_EXTERNAL_DATA_FOLDER`, where no file is, never against the
        working directory.
    provider : {'auto', 'cpu', 'cuda', 'openvino'}
        Where to run.
    threads : int, optional
        Intra-op threads (OpenVINO's threads for ``openvino``); all cores when None.
    cuda_options : dict, optional
        CUDA provider options; :data:`CUDA_DETERMINISTIC` when None.

    Returns
    -------
    session : onnxruntime.InferenceSession
    used : str
        The provider the session actually runs on, read back from the session.
    """
    ort = import_onnxruntime()
    wanted = resolve_provider(provider)
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    # Fatal only: a failed run is reported as one line by Models, not by onnxruntime's own log.
    options.log_severity_level = 4
    # A graph loaded from bytes resolves external data against the working directory; the bundle
    # check refuses every such reference, and this makes onnxruntime resolve any that slipped
    # through against a path that cannot be a directory, so no file can be read.
    options.add_session_config_entry(EXTERNAL_DATA_FOLDER_KEY, NO_EXTERNAL_DATA_FOLDER)
    if threads is not None:
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
    if wanted in (CPU_PROVIDER, OPENVINO_PROVIDER):
        # No arena: onnxruntime's CPU arena keeps the peak of every call it has run (at 128x128x3,
        # calls of 256 images to the encoder held some 130 MB more each), where malloc returns
        # it; measured as fast, and the arithmetic does not depend on where tensors live.
        options.enable_cpu_mem_arena = False
    if wanted == CPU_PROVIDER:
        providers: list[Any] = [wanted]
    elif wanted == OPENVINO_PROVIDER:
        # float32 on the CPU device: OpenVINO's default CPU precision hint may run products in
        # bfloat16 where the CPU has it, which would not be the graph's arithmetic.
        ov_options = {"device_type": "CPU", "precision": "FP32", "num_of_threads": str(threads or os.cpu_count() or 1)}
        providers = [(wanted, ov_options), CPU_PROVIDER]
    else:
        if hasattr(ort, "preload_dlls"):
            # CUDA and cuDNN often come as pip packages (nvidia-*), which the provider finds
            # only once they are loaded.
            ort.preload_dlls()
        options.use_deterministic_compute = True
        providers = [(wanted, cuda_options or CUDA_DETERMINISTIC), CPU_PROVIDER]
    try:
        session = ort.InferenceSession(model, sess_options=options, providers=providers)
    except Exception as exc:  # onnxruntime raises its own untyped errors for bad graphs
        raise DeepSMOTEError(f"onnxruntime cannot load the graph: {str(exc).splitlines()[0]}") from None
    used = session.get_providers()[0]
    if used != wanted:
        if provider in ("cuda", "openvino"):
            raise DeepSMOTEError(
                f"asked for {wanted} but onnxruntime fell back to {used}; check the {provider} install"
            )
        log.warning("onnxruntime fell back from %s to %s", wanted, used)
    log.info("onnxruntime session on %s", used)
    return session, used


class RunTerminated(DeepSMOTEError):
    """An onnxruntime run ended by :func:`terminate_runs` (a signal stopped the command)."""


_runs_lock = threading.Lock()
_in_flight: set[Any] = set()
_terminated_by: list[int] = []


@contextmanager
def run_options() -> Iterator[Any]:
    """The ``RunOptions`` of one onnxruntime run, terminated by :func:`terminate_runs`.

    A run that starts after :func:`terminate_runs` starts terminated and returns at once.
    """
    options = import_onnxruntime().RunOptions()
    with _runs_lock:
        options.terminate = bool(_terminated_by)
        _in_flight.add(options)
    try:
        yield options
    finally:
        with _runs_lock:
            _in_flight.discard(options)


def terminate_runs(signum: int) -> None:
    """End every onnxruntime run in flight and refuse new ones, for the signal ``signum``.

    Safe from any thread but not from a Python signal handler (it takes a lock the interrupted
    code may hold); the CLI calls it from a thread that the C-level handler wakes.
    """
    with _runs_lock:
        _terminated_by.append(signum)
        for options in _in_flight:
            options.terminate = True


def allow_runs() -> None:
    """Let runs start again after :func:`terminate_runs` (a command's end, in a process that goes on)."""
    with _runs_lock:
        _terminated_by.clear()


def runs_terminated() -> bool:
    """Whether :func:`terminate_runs` was called since the last :func:`allow_runs`."""
    return bool(_terminated_by)


def await_stop(timeout: float = 5.0) -> None:
    """On the main thread, give the Python handler of the signal that terminated the runs the
    moment it needs to raise (it runs between bytecodes, after the run that the signal ended).

    Elsewhere, or where no handler raises within ``timeout`` seconds, it returns and the caller
    raises :class:`RunTerminated`.
    """
    if threading.current_thread() is not threading.main_thread():
        return
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        time.sleep(0.01)
