"""The exported decoder arrangements: the same function as the decoder, and what onnxruntime runs.

``ExportDecoder`` for the 32x32 paper decoder (MatMul + Col2Im; the 28x28 one's is Winograd's since
0.12.0: ``test_training_winograd_graph.py``), ``PhaseDecoder`` for resize-conv's (phase convolutions
in place of upsampling and 3x3 convolution).
"""

from __future__ import annotations

import numpy as np
import onnx
import pytest
import torch
from deepsmote.runtime.bundle import DECODER_INPUT, DECODER_OUTPUT, create_session
from deepsmote.training.decoder_graph import ExportDecoder, PhaseConv, cpu_decoder
from deepsmote.training.export import _export_graph as export_graph
from deepsmote.training.model import ModelConfig, build_models
from torch import nn

SHAPES = [(1, 28, 28), (3, 28, 28), (1, 32, 32), (3, 32, 32)]


PHASE_CASES = [((1, 16, 16), 0), ((1, 28, 28), 0), ((1, 48, 40), 1), ((3, 64, 64), 0), ((3, 32, 32), 2)]


def trained_like_decoder(shape: tuple[int, int, int], arch: str = "paper", res_blocks: int = 0) -> nn.Module:
    """A small decoder in eval mode whose BatchNorm statistics are not the identity."""
    torch.manual_seed(0)
    _, decoder = build_models(ModelConfig(shape, width=8, latent_dim=16, arch=arch, res_blocks=res_blocks))
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


@pytest.mark.parametrize("shape", [(1, 32, 32), (3, 32, 32)])
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


@pytest.mark.parametrize(("shape", "res_blocks"), PHASE_CASES)
def test_phase_decoder_is_the_same_function_as_the_resize_conv_decoder(shape, res_blocks):
    decoder = trained_like_decoder(shape, "resize-conv", res_blocks)
    z = torch.randn(37, 16)
    with torch.no_grad():
        expected, got = decoder(z), cpu_decoder(decoder).eval()(z)
    assert got.shape == (37, *shape)
    torch.testing.assert_close(got, expected, rtol=0, atol=1e-5)


@pytest.mark.parametrize(("shape", "arch", "res_blocks"), [((1, 16, 16), "resize-conv", 1), ((1, 28, 28), "paper", 0)])
def test_later_changes_to_the_decoder_do_not_show_in_its_arrangement(shape, arch, res_blocks):
    # The phase graph and (28x28 paper) the Winograd graph copy every weight and statistic.
    decoder = trained_like_decoder(shape, arch, res_blocks)
    arranged = cpu_decoder(decoder).eval()
    z = torch.randn(3, 16)
    with torch.no_grad():
        before = arranged(z)
        for parameter in decoder.parameters():
            parameter.add_(1.0)
        for module in decoder.modules():
            if isinstance(module, nn.BatchNorm2d):
                module.running_mean.add_(1.0)
        torch.testing.assert_close(arranged(z), before, rtol=0, atol=0)


@pytest.mark.parametrize(("shape", "res_blocks"), [((1, 48, 40), 1), ((3, 64, 64), 0)])
def test_phase_graph_matches_torch_for_any_batch_and_upsamples_nothing(shape, res_blocks, tmp_path):
    decoder = trained_like_decoder(shape, "resize-conv", res_blocks)
    path = tmp_path / "decoder.onnx"
    arranged = cpu_decoder(decoder).eval()
    export_graph(arranged, torch.randn(2, 16), DECODER_INPUT, DECODER_OUTPUT, path)
    ops = [node.op_type for node in onnx.load(str(path)).graph.node]
    stages = [m for m in arranged.modules() if isinstance(m, PhaseConv)]
    # Both forms are in each case: wide stages as one convolution per phase, narrow ones (the last,
    # with the image's channels, among them) as one convolution for all four phases.
    assert {stage.per_phase for stage in stages} == {True, False}
    # They replace each upsampling and its 3x3 convolution, each phase's padding held by its Conv.
    assert "Resize" not in ops and "Pad" not in ops
    per_stage = sum(4 if stage.per_phase else 1 for stage in stages)
    assert ops.count("Conv") == per_stage + 2 * res_blocks * (len(stages) - 1)
    session, _ = create_session(path.read_bytes(), "cpu", 1)
    z = torch.randn(37, 16)
    with torch.no_grad():
        expected = decoder(z).numpy()
    whole = session.run(None, {DECODER_INPUT: z.numpy()})[0]
    np.testing.assert_allclose(whole, expected, rtol=0, atol=1e-5)
    # The runtime sizes its calls by the image: the bytes must not depend on it.
    for batch in (1, 5, 16):
        parts = [session.run(None, {DECODER_INPUT: z[i : i + batch].numpy()})[0] for i in range(0, 37, batch)]
        assert np.concatenate(parts).tobytes() == whole.tobytes()
