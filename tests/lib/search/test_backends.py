"""The search's network backends: onnxruntime on ``model.onnx`` gives TorchScript's outputs."""

from __future__ import annotations

import functools
import logging

import numpy as np
import pytest
import torch
from helpers.search import DATA, IFOS, PSD, SAMPLE_RATE, Energy

pytest.importorskip("onnxruntime")

from aframe_lib.export import export_onnx, export_torchscript  # noqa: E402
from aframe_lib.search import Search, find_spans  # noqa: E402
from aframe_lib.search.backends import fast_onnx  # noqa: E402
from aframe_lib.utils.errors import ConfigError, ModelFileError  # noqa: E402

KERNEL = int(DATA["kernel_length"] * SAMPLE_RATE)


def resnet(seed: int = 0, groups: int | None = 4) -> torch.nn.Module:
    """A small ml4gw ResNet1D with 6 GroupNorm1D layers (what the ONNX rewrite touches)."""
    from ml4gw.nn.norm import GroupNorm1D
    from ml4gw.nn.resnet import ResNet1D

    torch.manual_seed(seed)
    norm = functools.partial(GroupNorm1D, num_groups=groups)
    net = ResNet1D(len(IFOS), [1, 1], 1, norm_layer=norm)
    for module in net.modules():  # non-trivial affine parameters
        if isinstance(module, GroupNorm1D):
            torch.nn.init.normal_(module.weight, 1.0, 0.3)
            torch.nn.init.normal_(module.bias, 0.0, 0.3)
    return net.eval()


def export_both(directory, model: torch.nn.Module, onnx_model: torch.nn.Module | None = None):
    """``model.pt`` + ``model.json`` + ``model.onnx`` (of ``onnx_model``, default ``model``)."""
    directory.mkdir(parents=True, exist_ok=True)
    example, check = torch.randn(4, len(IFOS), KERNEL), torch.randn(4, len(IFOS), KERNEL)
    path = directory / "model.pt"
    export_torchscript(model, example, path, {"data": DATA, "psd": PSD}, check=check)
    export_onnx(onnx_model or model, example, directory / "model.onnx", check=check)
    return str(path)


@pytest.fixture(scope="module")
def resnet_model(tmp_path_factory):
    return export_both(tmp_path_factory.mktemp("resnet"), resnet())


def test_onnx_scores_equal_torchscript_on_a_resnet(resnet_model, noise_dir):
    searches = {
        backend: Search.from_exported(resnet_model, backend=backend, device="cpu")
        for backend in ("torchscript", "onnx", "auto")
    }
    assert searches["torchscript"].settings()["backend"] == "torchscript"
    assert searches["auto"].settings()["backend"].startswith("onnx")  # a CPU with model.onnx
    span = find_spans(str(noise_dir), IFOS, SAMPLE_RATE)[0]
    times, expected = searches["torchscript"].outputs(span)
    assert np.ptp(expected) > 1e-3  # the windows score differently: a real comparison
    for backend in ("onnx", "auto"):
        t, got = searches[backend].outputs(span)
        np.testing.assert_array_equal(t, times)
        np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-5 * np.abs(expected).max())


def test_parallel_onnx_calls_give_the_serial_scores(resnet_model, noise_dir):
    from aframe_lib.export import load_exported
    from aframe_lib.search.backends import load_network

    model, _ = load_exported(resnet_model)
    span = find_spans(str(noise_dir), IFOS, SAMPLE_RATE)[0]
    scores, torch_threads = [], torch.get_num_threads()
    for threads in (1, 3):
        net = load_network(resnet_model, model, "cpu", (2, KERNEL), "onnx", threads=threads)
        search = Search.from_exported(resnet_model, device="cpu", batch_size=50)
        search.network = net
        scores.append(search.outputs(span)[1])
        net.close()
        assert torch.get_num_threads() == torch_threads  # whitened on one thread meanwhile
    np.testing.assert_array_equal(scores[0], scores[1])


def test_saved_spans_survive_another_onnx_thread_count(resnet_model, noise_dir, tmp_path):
    """A rerun on another thread count (the same scores) keeps the saved spans; the other
    backend searches again."""
    from aframe_lib.export import load_exported
    from aframe_lib.search.backends import load_network

    model, _ = load_exported(resnet_model)
    spans = find_spans(str(noise_dir), IFOS, SAMPLE_RATE)
    parts = tmp_path / "parts"
    searches = []
    for threads in (2, 1):
        search = Search.from_exported(resnet_model, device="cpu", threshold=None)
        search.network = load_network(resnet_model, model, "cpu", (2, KERNEL), "onnx", threads)
        searches.append(search)
    assert searches[0].settings()["backend"] != searches[1].settings()["backend"]
    first = searches[0].run(spans, progress=False, checkpoint=parts, key="k")
    calls = []
    searches[1].outputs = lambda span, progress=None: calls.append(span)
    again = searches[1].run(spans, progress=False, checkpoint=parts, key="k")
    assert calls == [] and np.array_equal(again.events.stat, first.events.stat)
    torchscript = Search.from_exported(
        resnet_model, device="cpu", backend="torchscript", threshold=None
    )
    outputs = torchscript.outputs
    torchscript.outputs = lambda span, progress=None: (calls.append(span), outputs(span))[1]
    torchscript.run(spans, progress=False, checkpoint=parts, key="k")
    assert calls == spans
    for search in searches:
        search.network.close()


def test_onnx_gives_torchscripts_events(tmp_path, foreground):
    directory, injections = foreground
    path = export_both(tmp_path / "energy", Energy())
    spans = find_spans(str(directory), IFOS, SAMPLE_RATE)
    events = {
        backend: Search.from_exported(path, backend=backend, device="cpu", threshold=5.0)
        .run(spans, progress=False)
        .events
        for backend in ("torchscript", "onnx")
    }
    reference, got = events["torchscript"], events["onnx"]
    assert len(reference) >= 18  # the loud injections
    np.testing.assert_allclose(got.time, reference.time, rtol=0, atol=1e-6)
    np.testing.assert_allclose(got.stat, reference.stat, rtol=1e-5)
    np.testing.assert_array_equal(got.var, reference.var)


@pytest.mark.parametrize("groups", [4, None])  # None: one group per channel
def test_rewrite_makes_group_norms_instance_norms_with_the_same_outputs(tmp_path, groups):
    import onnx
    import onnxruntime

    path = tmp_path / "model.onnx"
    export_onnx(resnet(groups=groups), torch.randn(4, len(IFOS), KERNEL), path)
    serialized = path.read_bytes()
    fast = fast_onnx(serialized, (len(IFOS), KERNEL))
    ops = [n.op_type for n in onnx.load_from_string(serialized).graph.node]
    fast_ops = [n.op_type for n in onnx.load_from_string(fast).graph.node]
    assert ops.count("Pow") == 18 and "InstanceNormalization" not in ops  # 3 per GroupNorm1D
    assert "Pow" not in fast_ops and fast_ops.count("InstanceNormalization") == 6
    assert fast_ops.count("BatchNormalization") == 6  # the per-channel affine
    assert fast_ops.count("Conv") == ops.count("Conv") == 6
    x = np.random.default_rng(1).normal(size=(8, len(IFOS), KERNEL)).astype(np.float32)
    options = onnxruntime.SessionOptions()
    options.log_severity_level = 3
    run = [
        onnxruntime.InferenceSession(s, options, providers=["CPUExecutionProvider"]).run(
            None, {"input": x}
        )[0]
        for s in (serialized, fast)
    ]
    np.testing.assert_allclose(run[1], run[0], rtol=1e-5, atol=1e-5 * np.abs(run[0]).max())
    with torch.no_grad():  # and the eager model's
        eager = resnet(groups=groups)(torch.from_numpy(x)).numpy()
    np.testing.assert_allclose(run[1], eager, rtol=1e-5, atol=1e-5 * np.abs(eager).max())


def test_auto_falls_back_to_torchscript_when_the_onnx_copy_differs(tmp_path, caplog):
    path = export_both(tmp_path / "stale", resnet(0), onnx_model=resnet(1))
    with caplog.at_level(logging.WARNING, logger="aframe_lib.search.backends"):
        search = Search.from_exported(path, device="cpu")
    assert search.settings()["backend"] == "torchscript"
    assert "model.onnx differs from" in caplog.text and "re-export" in caplog.text
    # asked for explicitly, it is used: the user chose it
    assert Search.from_exported(path, device="cpu", backend="onnx").network.name == "onnx"


def test_bad_backend_choices_are_refused(oracle):
    with pytest.raises(ConfigError, match="backend='tensorrt': must be one of auto"):
        Search.from_exported(str(oracle), backend="tensorrt", device="cpu")
    with pytest.raises(ModelFileError, match=r"model.onnx not found"):
        Search.from_exported(str(oracle), backend="onnx", device="cpu")  # only model.pt there
    with pytest.raises(ConfigError, match="runs on the CPU only"):
        Search.from_exported(str(oracle), backend="onnx", device="cuda")
    # auto without model.onnx: TorchScript
    assert Search.from_exported(str(oracle), device="cpu").settings()["backend"] == "torchscript"
