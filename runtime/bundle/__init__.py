"""The model bundle: its manifest, its checks, and the onnxruntime sessions that run it.

Everything that knows what a bundle is lives here (``docs/design.md`` §2): the typed
:class:`Manifest` that export writes and every reader reads, :func:`load_bundle` with every
check done once, the one session factory, the encoder/decoder pair, and reduced precision.
"""

from .graphs import MalformedModel, external_data_locations, graph_signature
from .loading import Bundle, load_bundle, read_manifest, sha256_bytes, sha256_file
from .manifest import (
    CLASSIFIER_FILE,
    CLASSIFIER_INPUT,
    CLASSIFIER_OUTPUT,
    CPU_DECODER_FILE,
    DECODER_FILE,
    DECODER_INPUT,
    DECODER_OUTPUT,
    ENCODER_FILE,
    ENCODER_INPUT,
    ENCODER_OUTPUT,
    FORMAT_VERSION,
    FP16_DECODER_FILE,
    MANIFEST_NAME,
    ClassifierRecord,
    ExportRecord,
    Manifest,
    TrainingRecord,
)
from .models import (
    CPU_DECODE_BATCH,
    ENCODE_BATCH,
    GPU_DECODE_BATCH,
    Models,
    default_decode_batch,
    default_encode_batch,
    open_models,
)
from .precision import PRECISIONS, decoder_graph
from .session import (
    CPU_PROVIDER,
    OPENVINO_PROVIDER,
    PROVIDERS,
    Provider,
    create_session,
    import_onnxruntime,
    provider_option,
    resolve_provider,
)

__all__ = [
    "CLASSIFIER_FILE",
    "CLASSIFIER_INPUT",
    "CLASSIFIER_OUTPUT",
    "CPU_DECODER_FILE",
    "CPU_DECODE_BATCH",
    "CPU_PROVIDER",
    "DECODER_FILE",
    "DECODER_INPUT",
    "DECODER_OUTPUT",
    "ENCODER_FILE",
    "ENCODER_INPUT",
    "ENCODER_OUTPUT",
    "ENCODE_BATCH",
    "FORMAT_VERSION",
    "FP16_DECODER_FILE",
    "GPU_DECODE_BATCH",
    "MANIFEST_NAME",
    "OPENVINO_PROVIDER",
    "PRECISIONS",
    "PROVIDERS",
    "Bundle",
    "ClassifierRecord",
    "ExportRecord",
    "MalformedModel",
    "Manifest",
    "Models",
    "Provider",
    "TrainingRecord",
    "create_session",
    "decoder_graph",
    "default_decode_batch",
    "default_encode_batch",
    "external_data_locations",
    "graph_signature",
    "import_onnxruntime",
    "load_bundle",
    "open_models",
    "provider_option",
    "read_manifest",
    "resolve_provider",
    "sha256_bytes",
    "sha256_file",
]
