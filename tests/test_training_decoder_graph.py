"""The exported decoder arrangement: the same function as the decoder, and what onnxruntime runs."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
import torch
from deepsmote.runtime.bundle import DECODER_INPUT, DECODER_OUTPUT, create_session
from deepsmote.training.decoder_graph import ExportDecoder
from deepsmote.training.export import _export_graph as export_graph
from deepsmote.training.model import ModelConfig, build_models
from torch import nn

SHAPES = [(1, 28, 28), (3, 28, 28), (1, 32, 32), (3, 32, 32)]


def trained_like_decoder(shape: tuple[int, int, int]) -> nn.Module:
    """A small decoder in eval mode whose BatchNorm statistics are not the identity."""
    torch.manual_seed(0)
    _, decoder = build_models(ModelConfig(shape, width=8, latent_dim=16))
    with torch.no_grad():
        for module in decoder.modules():
            if isinstance(module, nn.BatchNorm2d):
                module.running_mean.uniform_(-1, 1)
                module.running_var.uniform_(0.5, 2)
                module.weight.uniform_(0.5, 1.5)
                module.bias.uniform_(-0.5, 0.5)
    return decoder.eval()


@pytest.mark.parametrize("shape", SHAPES)
def test_same_function_as_the_decoder(shape):
    decoder = trained_like_decoder(shape)
    z = torch.randn(37, 16)
    with torch.no_grad():
        expected, got = decoder(z), ExportDecoder(decoder).eval()(z)
    assert got.shape == (37, *shape)
    torch.testing.assert_close(got, expected, rtol=0, atol=1e-5)


def test_later_changes_to_the_decoder_do_not_show(tmp_path):
    decoder = trained_like_decoder((1, 28, 28))
    exported = ExportDecoder(decoder).eval()
    z = torch.randn(3, 16)
    with torch.no_grad():
        before = exported(z)
        decoder.fc[0].weight.add_(1.0)
        decoder.deconv[0].weight.add_(1.0)
        torch.testing.assert_close(exported(z), before, rtol=0, atol=0)


@pytest.mark.parametrize("shape", [(1, 28, 28), (3, 32, 32)])
def test_onnx_graph_matches_torch_and_has_no_first_conv_transpose(shape, tmp_path):
    decoder = trained_like_decoder(shape)
    path = tmp_path / "decoder.onnx"
    export_graph(ExportDecoder(decoder).eval(), torch.randn(2, 16), DECODER_INPUT, DECODER_OUTPUT, path)
    ops = [node.op_type for node in onnx.load(str(path)).graph.node]
    # One batched MatMul and Col2Im replace the first of the three transposed convolutions.
    assert ops.count("Col2Im") == 1 and ops.count("ConvTranspose") == 2
    session, _ = create_session(path.read_bytes(), "cpu")
    for batch in (1, 37):
        z = torch.randn(batch, 16)
        with torch.no_grad():
            expected = decoder(z).numpy()
        got = session.run(None, {DECODER_INPUT: z.numpy()})[0]
        np.testing.assert_allclose(got, expected, rtol=0, atol=1e-5)
