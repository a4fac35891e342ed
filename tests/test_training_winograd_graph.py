"""The 28x28 paper decoder as Winograd products (``decoder_cpu.onnx``): the decoder's function, in onnxruntime too."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
import torch
from deepsmote.runtime.bundle import DECODER_INPUT, DECODER_OUTPUT, create_session
from deepsmote.training.decoder_graph import ExportDecoder, cpu_decoder
from deepsmote.training.export import _export_graph as export_graph
from deepsmote.training.winograd_graph import WinogradConvTranspose, WinogradDecoder
from test_training_decoder_graph import trained_like_decoder

# Within the float32 roundings of Winograd's transforms, as training's `--conv winograd` (outputs in [-1, 1]).
ATOL = 2e-5


@pytest.mark.parametrize("shape", [(1, 28, 28), (3, 28, 28)])
def test_same_function_as_the_decoder(shape):
    decoder = trained_like_decoder(shape)
    arranged = cpu_decoder(decoder).eval()
    assert isinstance(arranged, WinogradDecoder)
    z = torch.randn(37, 16)
    with torch.no_grad():
        expected, got = decoder(z), arranged(z)
    assert got.shape == (37, *shape)
    torch.testing.assert_close(got, expected, rtol=0, atol=ATOL)
    # Not the decoder's own roundings: the products really are Winograd's.
    assert not torch.equal(got, expected)


def test_each_layer_is_its_transposed_convolution_batchnorm_and_relu():
    decoder = trained_like_decoder((1, 28, 28))
    conv, norm = decoder.deconv[3], decoder.deconv[4]
    layer = WinogradConvTranspose(conv, norm, 10)
    x = torch.randn(3, conv.in_channels, 10, 10)
    with torch.no_grad():
        expected = torch.relu(norm(conv(x)))
        got = layer(x.permute(2, 3, 0, 1)).permute(2, 3, 0, 1)
    assert got.shape == (3, conv.out_channels, 13, 13)
    torch.testing.assert_close(got, expected, rtol=0, atol=ATOL * expected.abs().max().item())


def test_only_the_28x28_paper_decoder_is_arranged_so():
    assert isinstance(cpu_decoder(trained_like_decoder((3, 32, 32))), ExportDecoder)
    for decoder in (trained_like_decoder((3, 32, 32)), trained_like_decoder((1, 28, 28), "resize-conv")):
        assert not WinogradDecoder.fits(decoder)
    with pytest.raises(ValueError, match="stride-1"):
        WinogradDecoder(trained_like_decoder((1, 32, 32)))
    strided = trained_like_decoder((1, 32, 32)).deconv
    with pytest.raises(ValueError, match="stride-1 unpadded"):
        WinogradConvTranspose(strided[0], strided[1], 4)


def test_onnx_graph_matches_torch_whatever_the_batch_and_threads(tmp_path):
    decoder = trained_like_decoder((1, 28, 28))
    path = tmp_path / "decoder_cpu.onnx"
    export_graph(cpu_decoder(decoder).eval(), torch.randn(2, 16), DECODER_INPUT, DECODER_OUTPUT, path)
    ops = [node.op_type for node in onnx.load(str(path)).graph.node]
    # Only the last, strided transposed convolution is left; no Col2Im.
    assert ops.count("ConvTranspose") == 1 and "Col2Im" not in ops
    z = torch.randn(37, 16)
    with torch.no_grad():
        expected = decoder(z).numpy()
    whole = None
    for threads in (1, 2):
        session, _ = create_session(path.read_bytes(), "cpu", threads)
        got = session.run(None, {DECODER_INPUT: z.numpy()})[0]
        np.testing.assert_allclose(got, expected, rtol=0, atol=ATOL)
        whole = got if whole is None else whole
        assert got.tobytes() == whole.tobytes()
        # The runtime sizes its calls by the image: the bytes must not depend on it.
        for batch in (1, 5, 16):
            parts = [session.run(None, {DECODER_INPUT: z[i : i + batch].numpy()})[0] for i in range(0, 37, batch)]
            assert np.concatenate(parts).tobytes() == whole.tobytes()
