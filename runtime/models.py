"""Encoder and decoder of a bundle, run by onnxruntime, with their signatures checked."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from .bundle import (
    DECODER_INPUT,
    DECODER_OUTPUT,
    ENCODER_INPUT,
    ENCODER_OUTPUT,
    Bundle,
)
from .errors import DeepSMOTEError
from .session import create_session


@dataclass
class Models:
    """The two sessions of a bundle.

    Attributes
    ----------
    bundle : Bundle
    encoder, decoder : onnxruntime.InferenceSession
    provider : str
        The onnxruntime provider the sessions run on.
    """

    bundle: Bundle
    encoder: Any
    decoder: Any
    provider: str

    def encode(self, x: np.ndarray, batch_size: int = 256) -> np.ndarray:
        """Codes of images.

        Parameters
        ----------
        x : np.ndarray
            float32, shape (N, C, H, W), values in [-1, 1].
        batch_size : int
            Images per onnxruntime call.

        Returns
        -------
        np.ndarray
            float32, shape (N, Z).
        """
        return self._run(self.encoder, ENCODER_INPUT, x, batch_size, (self.bundle.latent_dim,))

    def decode(self, z: np.ndarray, batch_size: int = 256) -> np.ndarray:
        """Images of codes.

        Parameters
        ----------
        z : np.ndarray
            float32, shape (N, Z).
        batch_size : int
            Codes per onnxruntime call.

        Returns
        -------
        np.ndarray
            float32, shape (N, C, H, W), values in [-1, 1].
        """
        return self._run(self.decoder, DECODER_INPUT, z, batch_size, self.bundle.image_shape)

    @staticmethod
    def _run(session: Any, name: str, x: np.ndarray, batch_size: int, item_shape: tuple[int, ...]) -> np.ndarray:
        out = np.empty((x.shape[0], *item_shape), dtype=np.float32)
        for start in range(0, x.shape[0], batch_size):
            chunk = np.ascontiguousarray(x[start : start + batch_size], dtype=np.float32)
            out[start : start + len(chunk)] = session.run(None, {name: chunk})[0]
        return out


def _check_signature(session: Any, which: str, expect_in: tuple[str, tuple], expect_out: tuple[str, tuple]) -> None:
    for kind, args, (name, shape) in (
        ("input", session.get_inputs(), expect_in),
        ("output", session.get_outputs(), expect_out),
    ):
        if len(args) != 1 or args[0].name != name:
            found = [a.name for a in args]
            raise DeepSMOTEError(
                f"{which}: expected one {kind} named '{name}', found {found}; the bundle does not meet the contract"
            )
        declared = args[0].shape
        if len(declared) != len(shape) or any(
            isinstance(d, int) and d != s for d, s in zip(declared[1:], shape[1:], strict=True)
        ):
            raise DeepSMOTEError(f"{which}: {kind} '{name}' has shape {declared}, the manifest implies {list(shape)}")
        if isinstance(declared[0], int):
            raise DeepSMOTEError(
                f"{which}: {kind} '{name}' has a fixed batch size {declared[0]}; the batch axis must be dynamic"
            )
        if args[0].type != "tensor(float)":
            raise DeepSMOTEError(f"{which}: {kind} '{name}' is {args[0].type}, expected tensor(float)")


def open_models(bundle: Bundle, provider: str = "auto", threads: int | None = None) -> Models:
    """Build and check both sessions of ``bundle``.

    Raises
    ------
    DeepSMOTEError
        If a graph's names or shapes disagree with the manifest, or the provider is missing.
    """
    encoder, used = create_session(bundle.encoder_bytes, provider, threads)
    decoder, _ = create_session(bundle.decoder_bytes, provider, threads)
    image = ("N", *bundle.image_shape)
    latent = ("N", bundle.latent_dim)
    _check_signature(encoder, f"{bundle.path}/encoder.onnx", (ENCODER_INPUT, image), (ENCODER_OUTPUT, latent))
    _check_signature(decoder, f"{bundle.path}/decoder.onnx", (DECODER_INPUT, latent), (DECODER_OUTPUT, image))
    return Models(bundle, encoder, decoder, used)
