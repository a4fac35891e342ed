"""`--conv winograd`: the transposed convolutions against torch's, and training with them."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
from deepsmote.runtime.errors import DeepSMOTEError
from deepsmote.runtime.readers import LabelledImages, read_dataset
from deepsmote.training.model import ModelConfig, build_models
from deepsmote.training.trainer import TrainConfig, load_checkpoint, train
from deepsmote.training.winograd import applies_to, check_conv_algorithm, conv_transpose2d, with_conv_algorithm
from helpers import run_main
from test_training_trainer import TINY, assert_same_tensors
from torch.nn import functional as F

WINOGRAD = replace(TINY, conv="winograd")


def relative_error(actual: torch.Tensor, expected: torch.Tensor) -> float:
    """Largest difference over the largest magnitude of ``expected``."""
    actual, expected = actual.detach(), expected.detach()
    return float((actual - expected).abs().max() / expected.abs().max())


@pytest.mark.parametrize(
    ("n", "c", "k", "side", "taps", "channels_last"),
    [
        (4, 32, 16, 7, 4, True),  # the paper decoder's first layer, narrow
        (3, 16, 8, 10, 4, False),  # its second
        (2, 5, 3, 1, 4, True),  # a 1x1 map
        (2, 4, 6, 6, 3, False),  # another kernel size
        (1, 3, 2, 9, 2, True),
    ],
)
def test_matches_torch_forward_and_backward(n, c, k, side, taps, channels_last):
    torch.manual_seed(side)
    layout = torch.channels_last if channels_last else torch.contiguous_format
    x = torch.randn(n, c, side, side).contiguous(memory_format=layout)
    weight, bias = torch.randn(c, k, taps, taps), torch.randn(k)
    outputs, grads = [], []
    for conv in (F.conv_transpose2d, conv_transpose2d):
        leaves = [t.clone().requires_grad_() for t in (x, weight, bias)]
        y = conv(*leaves)
        y.backward(torch.linspace(-1, 1, y.numel()).view_as(y))
        outputs.append(y)
        grads.append([t.grad for t in leaves])
    assert outputs[1].shape == (n, k, side + taps - 1, side + taps - 1)
    assert relative_error(outputs[1], outputs[0]) < 2e-5
    for ours, theirs in zip(grads[1], grads[0], strict=True):
        assert relative_error(ours, theirs) < 2e-5


def test_only_stride_one_unpadded_transposed_convs_apply():
    assert applies_to(torch.nn.ConvTranspose2d(4, 4, 4))
    assert not applies_to(torch.nn.ConvTranspose2d(4, 4, 4, stride=2))
    assert not applies_to(torch.nn.ConvTranspose2d(4, 4, 4, padding=1))
    assert not applies_to(torch.nn.ConvTranspose2d(4, 4, 5))  # F(5, 5) would need a ninth point
    assert not applies_to(torch.nn.Conv2d(4, 4, 4))
    _, decoder = build_models(ModelConfig((1, 28, 28), 8, 16, "paper"))
    assert sum(applies_to(layer) for layer in decoder.modules()) == 2


def test_the_decoder_is_the_same_function_and_keeps_its_modules():
    torch.manual_seed(0)
    _, decoder = build_models(ModelConfig((1, 28, 28), 8, 16, "paper"))
    codes = torch.randn(6, 16)
    decoder.eval()
    with torch.no_grad():
        direct = decoder(codes)
        winograd = with_conv_algorithm(decoder, "winograd")(codes)
    assert relative_error(winograd, direct) < 1e-5
    # The layers' forward is theirs again after the call: an export traces the plain layers.
    assert all("forward" not in layer.__dict__ for layer in decoder.modules())
    assert with_conv_algorithm(decoder, "direct") is decoder


@pytest.fixture(scope="module")
def small(fmnist_mini: Path) -> LabelledImages:
    """Up to 15 images per class of the embedded subset: 125 images, 4 steps of 32."""
    data = read_dataset(fmnist_mini)
    keep = np.sort(np.concatenate([np.flatnonzero(data.labels == c)[:15] for c in range(len(data.classes))]))
    return LabelledImages(data.images[keep], data.labels[keep], data.classes)


def test_training_follows_the_direct_run(small, tmp_path):
    direct = load_checkpoint(train(small, replace(TINY, epochs=2), tmp_path / "direct").last)
    winograd = load_checkpoint(train(small, replace(WINOGRAD, epochs=2), tmp_path / "winograd").last)
    assert winograd["config"]["conv"] == "winograd" and direct["config"]["conv"] == "direct"
    for ours, theirs in zip(winograd["history"], direct["history"], strict=True):
        assert ours["loss"] == pytest.approx(theirs["loss"], rel=1e-3)
        assert ours["loss"] != theirs["loss"]  # other roundings: the Winograd layers really ran
    weights = winograd["decoder"]["deconv.0.weight"]
    assert relative_error(weights, direct["decoder"]["deconv.0.weight"]) < 1e-2


def test_same_seed_same_bytes_and_resume(small, tmp_path):
    straight = load_checkpoint(train(small, replace(WINOGRAD, epochs=2), tmp_path / "straight").last)
    again = load_checkpoint(train(small, replace(WINOGRAD, epochs=2), tmp_path / "again").last)
    train(small, WINOGRAD, tmp_path / "split")
    resumed = load_checkpoint(train(small, replace(WINOGRAD, epochs=2), tmp_path / "split", resume=True).last)
    for other in (again, resumed):
        for key in ("encoder", "decoder", "encoder_optimizer", "decoder_optimizer"):
            assert_same_tensors(straight[key], other[key])


def test_a_run_resumes_only_with_its_conv(small, tmp_path):
    train(small, TINY, tmp_path / "run")
    with pytest.raises(DeepSMOTEError, match="conv 'direct' -> 'winograd'"):
        train(small, replace(WINOGRAD, epochs=2), tmp_path / "run", resume=True)


@pytest.mark.parametrize(
    ("model", "precision", "device", "message"),
    [
        (ModelConfig((1, 28, 28), 8, 16, "resize-conv"), "fp32", "cpu", "only the 28x28 `arch` paper decoder"),
        (ModelConfig((3, 32, 32), 8, 16, "paper"), "fp32", "cpu", "only the 28x28 `arch` paper decoder"),
        (ModelConfig((1, 28, 28), 8, 16, "paper"), "bf16", "cpu", "runs in fp32 on the CPU, not in bf16 on cpu"),
        (ModelConfig((1, 28, 28), 8, 16, "paper"), "fp32", "cuda", "not in fp32 on cuda; use `device` cpu"),
    ],
)
def test_what_winograd_cannot_run_is_refused(model, precision, device, message):
    with pytest.raises(DeepSMOTEError, match=message):
        check_conv_algorithm("winograd", model, precision, torch.device(device))
    check_conv_algorithm("direct", model, precision, torch.device(device))


def test_an_unknown_conv_is_refused():
    with pytest.raises(DeepSMOTEError, match="`conv` must be one of direct, winograd, got 'fft'"):
        TrainConfig(conv="fft")  # type: ignore[arg-type]


CLI_TINY = [
    "--epochs",
    "1",
    "--width",
    "8",
    "--latent-dim",
    "16",
    "--device",
    "cpu",
    "--arch",
    "paper",
    "--loss",
    "mse",
]


def test_cli_trains_and_exports_with_winograd(fmnist_mini, tmp_path, capsys):
    code, stdout, err = run_main(
        ["train", fmnist_mini, "--out", tmp_path / "b", *CLI_TINY, "--conv", "winograd"], capsys
    )
    assert code == 0, err
    assert f"wrote {tmp_path / 'b'}" in stdout
    assert load_checkpoint(tmp_path / "b.run" / "best.pt")["config"]["conv"] == "winograd"


def test_cli_refuses_winograd_for_the_default_model(fmnist_mini, tmp_path, capsys):
    args = ["train", fmnist_mini, "--out", tmp_path / "b", *CLI_TINY[:8], "--conv", "winograd"]
    code, _, err = run_main(args, capsys)
    assert code == 2  # a combination of options deepsmote checks: a usage error
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and "only the 28x28 --arch paper decoder" in lines[0] and "--conv direct" in lines[0]
    assert list(tmp_path.iterdir()) == []
