"""ONNX export: the bundle meets the contract and matches torch; failures leave nothing behind."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch
from deepsmote.runtime.bundle import (
    DECODER_INPUT,
    DECODER_OUTPUT,
    ENCODER_INPUT,
    ENCODER_OUTPUT,
    FORMAT_VERSION,
    MANIFEST_NAME,
    create_session,
    decoder_graph,
    load_bundle,
    open_models,
    sha256_file,
)
from deepsmote.runtime.errors import DeepSMOTEError
from deepsmote.runtime.pixels import to_model
from deepsmote.runtime.readers import read_dataset
from deepsmote.training import export as export_module
from deepsmote.training.decoder_graph import cpu_decoder
from deepsmote.training.export import export_bundle
from deepsmote.training.model import ModelConfig, build_models
from deepsmote.training.trainer import load_checkpoint, models_from_checkpoint


@pytest.fixture(scope="module")
def checkpoint(tiny_bundle: Path) -> Path:
    return tiny_bundle.with_name(tiny_bundle.name + ".run") / "best.pt"


def siblings(path: Path) -> list[str]:
    return sorted(p.name for p in path.parent.iterdir())


@pytest.mark.parametrize("batch", [1, 37])
def test_onnxruntime_matches_torch(tiny_bundle, checkpoint, fmnist_mini, batch):
    models = open_models(load_bundle(tiny_bundle), provider="cpu")
    encoder, decoder = models_from_checkpoint(load_checkpoint(checkpoint))
    x = to_model(read_dataset(fmnist_mini).images[100 : 100 + batch])
    with torch.no_grad():
        z = encoder(torch.from_numpy(x)).numpy()
        y = decoder(torch.from_numpy(z)).numpy()
    got_z = models.encode(x)
    assert got_z.shape == (batch, 16)
    np.testing.assert_allclose(got_z, z, rtol=0, atol=1e-4)
    got_y = models.decode(z)
    assert got_y.shape == (batch, 1, 28, 28)
    np.testing.assert_allclose(got_y, y, rtol=0, atol=1e-4)


@pytest.mark.parametrize(("offset", "refused"), [(5e-5, False), (2e-4, True)])
def test_verify_refuses_a_graph_more_than_1e_4_from_torch(tiny_bundle, checkpoint, fmnist_mini, offset, refused):
    # torch's encoder shifted by a constant: the graph is then that far from it (to rounding,
    # ~1e-6), inside the 1e-4 the contract allows, or outside it.
    encoder, decoder = models_from_checkpoint(load_checkpoint(checkpoint))
    images = torch.from_numpy(to_model(read_dataset(fmnist_mini).images[:16]))

    def shifted(x: torch.Tensor) -> torch.Tensor:
        return encoder(x) + offset

    if not refused:
        checks = export_module.verify(shifted, decoder, tiny_bundle, images)
        encoder_checks = [c for c in checks if c.graph == "encoder.onnx"]
        assert len(encoder_checks) == 2 and all(0.5 * offset < c.max_abs_diff <= 1e-4 for c in encoder_checks)
        return
    with pytest.raises(DeepSMOTEError, match=r"differs from torch by more than 0\.0001 \(encoder\.onnx on 16 real"):
        export_module.verify(shifted, decoder, tiny_bundle, images)


def test_manifest(tiny_bundle, checkpoint):
    manifest = json.loads((tiny_bundle / MANIFEST_NAME).read_text())
    state = load_checkpoint(checkpoint)
    assert manifest["format_version"] == FORMAT_VERSION
    assert manifest["image_shape"] == [1, 28, 28]
    assert manifest["latent_dim"] == 16
    assert manifest["classes"] == [str(c) for c in range(10)]
    assert manifest["pixel_range"] == [-1, 1]
    training = manifest["training"]
    assert training["config"] == state["config"]
    assert training["epochs_run"] == 1
    assert training["final_losses"] == {k: state["history"][-1][k] for k in ("loss", "reconstruction", "penalty")}
    assert training["best_loss"] == state["best_loss"]
    assert training["logs"] == ["losses.jsonl", "losses.png"]
    assert all((tiny_bundle / name).is_file() for name in training["logs"])
    export = manifest["export"]
    assert export["opset"] >= 17
    assert export["exporter"] == "torch.onnx.export(dynamo=True)"
    assert export["torch_version"] == torch.__version__
    assert 0 <= export["max_abs_diff"] <= 1e-4
    assert len(export["checks"]) == 11 and {c["batch"] for c in export["checks"]} == {1, 64}
    graphs = ("encoder.onnx", "decoder.onnx", "decoder_cpu.onnx", "decoder_fp16.onnx")
    assert {c["graph"] for c in export["checks"]} == set(graphs)
    own = {"decoder_fp16.onnx": 4 / 255, "decoder_cpu.onnx": 1 / 255}
    for check in export["checks"]:
        # float16's and Winograd's (the 28x28 paper model's CPU graph) own tolerances; every
        # other graph within 1e-4 of torch, and the manifest's max_abs_diff is theirs.
        assert check["tolerance"] == own.get(check["graph"], 1e-4)
        assert 0 <= check["max_abs_diff"] <= check["tolerance"]
    bounded = [c["max_abs_diff"] for c in export["checks"] if c["graph"] not in own]
    assert export["max_abs_diff"] == max(bounded)
    assert manifest["files"] == {name: sha256_file(tiny_bundle / name) for name in graphs}


def test_the_fp16_decoder_is_the_runtimes_conversion_of_the_decoder(tiny_bundle):
    # The graph a bundle without one would get at run time, so both give the same bytes.
    decoder = (tiny_bundle / "decoder.onnx").read_bytes()
    assert (tiny_bundle / "decoder_fp16.onnx").read_bytes() == decoder_graph(decoder, "fp16")
    weights = onnx.load(str(tiny_bundle / "decoder_fp16.onnx")).graph.initializer
    assert weights and {w.data_type for w in weights} <= {onnx.TensorProto.FLOAT16, onnx.TensorProto.INT64}


@pytest.mark.parametrize(
    ("name", "first", "last"),
    [
        ("encoder.onnx", "image", "latent"),
        ("decoder.onnx", "latent", "image"),
        ("decoder_cpu.onnx", "latent", "image"),
        ("decoder_fp16.onnx", "latent", "image"),
    ],
)
def test_graphs_are_self_contained_inference_graphs(tiny_bundle, name, first, last):
    model = onnx.load(str(tiny_bundle / name), load_external_data=False)
    assert [i.name for i in model.graph.input] == [first]
    assert [o.name for o in model.graph.output] == [last]
    for value in (*model.graph.input, *model.graph.output):
        batch = value.type.tensor_type.shape.dim[0]
        assert batch.dim_param and not batch.HasField("dim_value"), "batch axis must be symbolic"
    assert all(t.data_location != onnx.TensorProto.EXTERNAL for t in model.graph.initializer)
    # BatchNorm in inference form: never in training mode (the optimiser may also fold it away).
    for node in model.graph.node:
        if node.op_type == "BatchNormalization":
            modes = [a.i for a in node.attribute if a.name == "training_mode"]
            assert modes in ([], [0])
    assert max(o.version for o in model.opset_import if o.domain in ("", "ai.onnx")) >= 17


def test_an_existing_bundle_is_refused_or_replaced(tiny_bundle, checkpoint, tmp_path):
    out = tmp_path / "bundle"
    out.mkdir()
    (out / MANIFEST_NAME).write_text("{}")
    (out / "keep.txt").write_text("old")
    with pytest.raises(DeepSMOTEError, match="already exists; pass --overwrite"):
        export_bundle(checkpoint, out)
    assert siblings(out) == ["bundle"] and (out / "keep.txt").read_text() == "old"
    export_bundle(checkpoint, out, overwrite=True)
    assert siblings(out) == ["bundle"]
    assert not (out / "keep.txt").exists()
    assert load_bundle(out).manifest.files == load_bundle(tiny_bundle).manifest.files


@pytest.mark.parametrize("kind", ["folder", "file"])
def test_overwrite_replaces_only_bundles(checkpoint, tmp_path, kind):
    out = tmp_path / "precious"
    if kind == "folder":
        out.mkdir()
        (out / "thesis.tex").write_text("mine")
    else:
        out.write_text("mine")
    with pytest.raises(DeepSMOTEError, match="exists and is not a deepsmote bundle"):
        export_bundle(checkpoint, out, overwrite=True)
    assert siblings(out) == ["precious"]
    assert (out / "thesis.tex" if kind == "folder" else out).read_text() == "mine"


def test_a_failed_verification_lists_every_output_and_keeps_the_old_bundle(
    tiny_bundle, checkpoint, tmp_path, monkeypatch
):
    monkeypatch.setattr(export_module, "TOLERANCE", -1.0)
    monkeypatch.setattr(export_module, "FP16_TOLERANCE", -1.0)
    monkeypatch.setattr(export_module, "WINOGRAD_TOLERANCE", -1.0)
    out = tmp_path / "bundle"
    shutil.copytree(tiny_bundle, out)
    with pytest.raises(DeepSMOTEError) as error:
        export_bundle(checkpoint, out, overwrite=True)
    message = str(error.value)
    assert "\n" not in message
    assert message.count("encoder.onnx on") == 2 and message.count("decoder.onnx on") == 3
    assert message.count("decoder_cpu.onnx on") == 3 and message.count("decoder_fp16.onnx on") == 3
    assert "no bundle was written" in message
    # No temporary directory left, and the old bundle untouched.
    assert siblings(out) == ["bundle"]
    assert load_bundle(out).manifest == load_bundle(tiny_bundle).manifest


def test_a_foreign_checkpoint_is_refused_before_anything_is_written(tmp_path):
    foreign = tmp_path / "model.pt"
    torch.save({"state_dict": {}}, foreign)
    with pytest.raises(DeepSMOTEError, match="not a deepsmote checkpoint"):
        export_bundle(foreign, tmp_path / "out" / "bundle")
    assert siblings(foreign) == ["model.pt"]


# Architectures and sizes the tests build, at tiny widths: (C, H, W), arch, residual blocks.
CALL_SIZE_CASES = [
    ((1, 28, 28), "paper", 0),
    ((1, 16, 16), "resize-conv", 0),
    ((1, 48, 40), "resize-conv", 1),
    ((3, 64, 64), "resize-conv", 0),
    ((3, 128, 128), "resize-conv", 0),
]


@pytest.mark.parametrize(("shape", "arch", "res_blocks"), CALL_SIZE_CASES, ids=lambda v: str(v))
def test_exported_graphs_give_the_same_bytes_for_any_call_size(shape, arch, res_blocks, tmp_path):
    # The runtime sizes its encoder and decoder calls by the image size (default_encode_batch,
    # default_decode_batch) and spreads small calls over its threads: the bytes must not move.
    torch.manual_seed(0)
    encoder, decoder = build_models(ModelConfig(shape, width=4, latent_dim=8, arch=arch, res_blocks=res_blocks))
    with torch.no_grad():
        for module in [*encoder.modules(), *decoder.modules()]:
            if isinstance(module, torch.nn.BatchNorm2d):  # statistics that are not the identity
                module.running_mean.uniform_(-1, 1)
                module.running_var.uniform_(0.5, 2)
    # The paper model's CPU arrangement (Winograd's at 28x28); resize-conv's phase graph has its own test.
    decoder = cpu_decoder(decoder.eval()) if arch == "paper" else decoder
    rng = np.random.default_rng(0)
    graphs = [
        (encoder, ENCODER_INPUT, ENCODER_OUTPUT, rng.uniform(-1, 1, (23, *shape)).astype(np.float32)),
        (decoder, DECODER_INPUT, DECODER_OUTPUT, rng.standard_normal((23, 8)).astype(np.float32)),
    ]
    for module, name, output, x in graphs:
        path = tmp_path / f"{name}.onnx"
        export_module._export_graph(module.eval(), torch.from_numpy(x[:2]), name, output, path)
        session, _ = create_session(path.read_bytes(), "cpu", threads=1)
        whole = session.run(None, {name: x})[0]
        for size in (1, 2, 5, 16):
            calls = [session.run(None, {name: x[i : i + size]})[0] for i in range(0, len(x), size)]
            assert np.concatenate(calls).tobytes() == whole.tobytes(), (name, size)
