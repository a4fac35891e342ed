"""The encoder and decoder: the reference layers, parameter counts and shapes."""

from __future__ import annotations

import pytest
import torch
from deepsmote.runtime.errors import DeepSMOTEError
from deepsmote.training.model import Decoder, Encoder, ModelConfig, build_models
from torch import nn

SHAPES = [(1, 28, 28), (3, 28, 28), (1, 32, 32), (3, 32, 32)]


def n_parameters(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def describe(layers: nn.Sequential) -> list[tuple]:
    """Each layer as (type, shape-defining arguments) for comparison with the reference."""
    rows: list[tuple] = []
    for layer in layers:
        if isinstance(layer, nn.Conv2d | nn.ConvTranspose2d):
            rows.append(
                (
                    type(layer).__name__,
                    layer.in_channels,
                    layer.out_channels,
                    layer.kernel_size[0],
                    layer.stride[0],
                    layer.padding[0],
                    layer.bias is not None,
                )
            )
        elif isinstance(layer, nn.BatchNorm2d):
            rows.append(("BatchNorm2d", layer.num_features))
        elif isinstance(layer, nn.LeakyReLU):
            rows.append(("LeakyReLU", layer.negative_slope))
        elif isinstance(layer, nn.Linear):
            rows.append(("Linear", layer.in_features, layer.out_features))
        else:
            rows.append((type(layer).__name__,))
    return rows


def test_parameter_counts_match_the_reference_at_paper_size():
    # Hand-computed from DeepSMOTE_MNIST.py: convs 1024 + 131072 + 524288 + 2097152, BatchNorm
    # 256 + 512 + 1024, fc 512*300 + 300; decoder fc 300*25088 + 25088, deconvs with bias
    # 2097152 + 256, 524288 + 128, 2048 + 1, BatchNorm 512 + 256.
    encoder, decoder = build_models(ModelConfig((1, 28, 28), width=64, latent_dim=300))
    assert n_parameters(encoder) == 2_909_228
    assert n_parameters(decoder) == 10_176_129


def test_layers_are_the_reference_sequence_for_28x28():
    encoder, decoder = build_models(ModelConfig((1, 28, 28), width=64, latent_dim=300))
    assert describe(encoder.conv) == [
        ("Conv2d", 1, 64, 4, 2, 1, False),
        ("LeakyReLU", 0.2),
        ("Conv2d", 64, 128, 4, 2, 1, False),
        ("BatchNorm2d", 128),
        ("LeakyReLU", 0.2),
        ("Conv2d", 128, 256, 4, 2, 1, False),
        ("BatchNorm2d", 256),
        ("LeakyReLU", 0.2),
        ("Conv2d", 256, 512, 4, 2, 1, False),
        ("BatchNorm2d", 512),
        ("LeakyReLU", 0.2),
    ]
    assert describe(nn.Sequential(encoder.fc)) == [("Linear", 512, 300)]
    assert describe(decoder.fc) == [("Linear", 300, 512 * 7 * 7), ("ReLU",)]
    assert describe(decoder.deconv) == [
        ("ConvTranspose2d", 512, 256, 4, 1, 0, True),
        ("BatchNorm2d", 256),
        ("ReLU",),
        ("ConvTranspose2d", 256, 128, 4, 1, 0, True),
        ("BatchNorm2d", 128),
        ("ReLU",),
        ("ConvTranspose2d", 128, 1, 4, 2, 0, True),
        ("Tanh",),
    ]


@pytest.mark.parametrize("channels", [1, 3])
def test_layers_for_32x32(channels):
    encoder, decoder = build_models(ModelConfig((channels, 32, 32), width=8, latent_dim=16))
    assert describe(encoder.conv)[0] == ("Conv2d", channels, 8, 4, 2, 1, False)
    assert describe(encoder.conv)[-3] == ("Conv2d", 32, 64, 4, 1, 0, False)
    assert describe(decoder.fc)[0] == ("Linear", 16, 64 * 8 * 8)
    assert [row for row in describe(decoder.deconv) if row[0] == "ConvTranspose2d"] == [
        ("ConvTranspose2d", 64, 32, 4, 2, 1, True),
        ("ConvTranspose2d", 32, 16, 4, 2, 1, True),
        ("ConvTranspose2d", 16, channels, 3, 1, 1, True),
    ]


@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: "x".join(map(str, s)))
@pytest.mark.parametrize("batch", [1, 5])
def test_shapes_round_trip(shape, batch):
    encoder, decoder = build_models(ModelConfig(shape, width=8, latent_dim=16))
    # Eval mode, as exported: BatchNorm in train mode cannot normalise one image at 1x1.
    encoder.eval()
    decoder.eval()
    x = torch.rand(batch, *shape) * 2 - 1
    with torch.no_grad():
        z = encoder(x)
        y = decoder(z)
        assert encoder.conv(x).shape[2:] == (1, 1)
    assert z.shape == (batch, 16)
    assert y.shape == (batch, *shape)
    assert y.abs().max() <= 1


@pytest.mark.parametrize(("shape", "start"), [((1, 28, 28), 7), ((3, 32, 32), 8)])
def test_decoder_start_is_derived_from_the_image_size(shape, start):
    assert ModelConfig(shape).decoder_start == start
    assert Decoder(ModelConfig(shape, width=8, latent_dim=16)).start == start


def test_train_mode_batch_of_two_works():
    encoder = Encoder(ModelConfig((1, 28, 28), width=8, latent_dim=16))
    assert encoder(torch.zeros(2, 1, 28, 28)).shape == (2, 16)


@pytest.mark.parametrize(
    ("shape", "named"),
    [((1, 64, 64), "64x64x1"), ((1, 28, 32), "28x32x1"), ((2, 28, 28), "28x28x2"), ((3, 16, 16), "16x16x3")],
)
def test_unsupported_sizes_are_one_line_errors(shape, named):
    with pytest.raises(DeepSMOTEError) as error:
        ModelConfig(shape)
    message = str(error.value)
    assert named in message
    assert "28x28 or 32x32" in message
    assert "\n" not in message


FAMILY = [(1, 16, 16), (1, 48, 40), (3, 64, 64), (3, 128, 128), (1, 28, 28), (3, 256, 200), (1, 17, 255)]


@pytest.mark.parametrize("shape", FAMILY, ids=lambda s: "x".join(map(str, s)))
@pytest.mark.parametrize("res_blocks", [0, 1])
def test_resize_conv_round_trips_every_family_size(shape, res_blocks):
    encoder, decoder = build_models(
        ModelConfig(shape, width=4, latent_dim=8, arch="resize-conv", res_blocks=res_blocks)
    )
    encoder.eval()
    decoder.eval()
    x = torch.rand(2, *shape) * 2 - 1
    with torch.no_grad():
        z = encoder(x)
        y = decoder(z)
    assert z.shape == (2, 8)
    assert y.shape == (2, *shape)
    assert y.abs().max() <= 1


@pytest.mark.parametrize(
    ("shape", "depth", "code_map"),
    [((1, 16, 16), 2, (4, 4)), ((1, 28, 28), 3, (4, 4)), ((1, 48, 40), 3, (6, 5)), ((3, 64, 64), 4, (4, 4)),
     ((3, 128, 128), 5, (4, 4)), ((3, 256, 256), 6, (4, 4)), ((1, 16, 200), 2, (4, 50))],
)  # fmt: skip
def test_depth_and_code_map_follow_the_size(shape, depth, code_map):
    config = ModelConfig(shape, width=4, arch="resize-conv")
    assert (config.depth, config.code_map) == (depth, code_map)
    assert config.stage_widths == tuple(4 * 2 ** min(i, 3) for i in range(depth))


def test_resize_conv_decoder_upsamples_by_nearest_then_conv():
    _, decoder = build_models(ModelConfig((3, 64, 64), width=4, latent_dim=8, arch="resize-conv", res_blocks=1))
    assert not any(isinstance(m, nn.ConvTranspose2d) for m in decoder.modules())
    layers = list(decoder.deconv)
    ups = [i for i, m in enumerate(layers) if isinstance(m, nn.Upsample)]
    assert len(ups) == 4
    for i in ups:
        assert layers[i].mode == "nearest" and layers[i].scale_factor == 2
        assert isinstance(layers[i + 1], nn.Conv2d) and layers[i + 1].kernel_size == (3, 3)


def _interior_spread(deconv: nn.Module, channels: int, side: int, margin: int) -> float:
    """Spatial spread of the output's interior for a constant input map: 0 means no pattern."""
    torch.manual_seed(0)
    with torch.no_grad():
        out = deconv.eval()(torch.randn(1, channels, 1, 1).expand(1, channels, side, side).contiguous())
    interior = out[..., margin:-margin, margin:-margin]
    return float((interior - interior.mean((-2, -1), keepdim=True)).abs().max())


def test_resize_conv_draws_no_checkerboard_where_transposed_convs_do():
    # A spatially constant feature map: resize-convolution keeps it constant away from the
    # borders; the paper's stride-2 transposed convolutions (32x32) print a periodic pattern.
    resize = ModelConfig((1, 64, 64), width=4, latent_dim=8, arch="resize-conv")
    _, decoder = build_models(resize)
    assert _interior_spread(decoder.deconv, resize.stage_widths[-1], 4, 16) < 1e-5
    _, paper = build_models(ModelConfig((1, 32, 32), width=4, latent_dim=8))
    assert _interior_spread(paper.deconv, 32, 8, 6) > 1e-2


@pytest.mark.parametrize(
    ("shape", "named"), [((1, 15, 16), "15x16x1"), ((1, 16, 257), "16x257x1"), ((2, 32, 32), "32x32x2")]
)
def test_sizes_outside_the_family_are_one_line_errors(shape, named):
    with pytest.raises(DeepSMOTEError) as error:
        ModelConfig(shape, arch="resize-conv")
    message = str(error.value)
    assert named in message and "16..256" in message and "`resize` HxW" in message
    assert "\n" not in message
