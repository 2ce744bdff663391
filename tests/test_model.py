"""CNN_TF shapes, heads, TorchScript files (round trip, consistency, bad files), devices."""

from __future__ import annotations

import json
import os
import sys
import zipfile

import pytest
import torch

from ser_cli.errors import ConfigError, ModelFileError
from ser_cli.model import (
    CNN,
    MODEL_FORMAT,
    ModelConfig,
    cpu_has_native_bf16,
    export_model,
    export_program,
    load_model,
    read_metadata,
    resolve_device,
    resolve_precision,
)
from conftest import tiny_model_config

HEADS = ["attention", "gap", "bilinear"]


def _metadata(classes=("high", "low"), model_config=None):
    from ser_cli.features import FeatureConfig
    from ser_cli.model import config_dict
    from ser_cli.scoring import ScoringConfig
    from ser_cli.segmentation import SegmentConfig

    return {
        "classes": list(classes),
        "feature_config": config_dict(FeatureConfig()),
        "segment_config": config_dict(SegmentConfig()),
        "scoring_config": config_dict(ScoringConfig()),
        "model_config": config_dict(model_config or tiny_model_config()),
    }


def _segments(n, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.rand(n, 1, 400, 200, generator=g)


@pytest.mark.parametrize(
    "kwargs, field",
    [
        ({"n_classes": 1}, "n_classes"),
        ({"head": "max"}, "head"),
        ({"widths": (4, 4, 4)}, "widths"),
        ({"pool_after": (0,)}, "pool_after"),
        ({"pool_after": (2, 2)}, "pool_after"),
        ({"conv1_channels": (8,)}, "conv1_channels"),
        ({"conv1_shapes": ((0, 2), (2, 8))}, "conv1_shapes"),
        ({"attention_reduce": "max"}, "attention_reduce"),
        ({"gap_batchnorm": True}, "gap_batchnorm"),  # needs head="gap"
        ({"head": "gap", "gap_batchnorm": 1}, "gap_batchnorm"),
        ({"dropout": 1.0}, "dropout"),
        ({"dropout": -0.1}, "dropout"),
        ({"dropout": True}, "dropout"),
        ({"dropout": "0.2"}, "dropout"),
    ],
)
def test_model_config_errors_name_the_field(kwargs, field):
    with pytest.raises(ConfigError, match=field):
        ModelConfig(**kwargs)


def test_model_config_round_trips_through_json():
    config = ModelConfig(n_classes=3, pool_after=(1, 2, 3), head="gap")
    from ser_cli.model import config_dict

    assert ModelConfig.from_dict(json.loads(json.dumps(config_dict(config)))) == config


def test_default_trunk_shape_and_size():
    """D2 default: 400 x 200 -> 99 x 49 x 80, about 93 k parameters; pool after Conv1 too -> 49 x 24."""
    net = CNN(ModelConfig(n_classes=4)).eval()
    with torch.no_grad():
        assert net.trunk(torch.zeros(1, 1, 400, 200)).shape == (1, 80, 99, 49)
        fast = CNN(ModelConfig(n_classes=4, pool_after=(1, 2, 3))).eval()
        assert fast.trunk(torch.zeros(1, 1, 400, 200)).shape == (1, 80, 49, 24)
    n_params = sum(p.numel() for p in net.parameters())
    assert 90_000 < n_params < 96_000


def _textbook_trunk(trunk, x):
    """The trunk in the textbook order, with ``trunk``'s own weights: every conv -> BN -> ReLU,
    Conv1's groups cropped and concatenated, then the 2 x 2 max-pools where D2 puts them."""
    from torch.nn import functional as F
    from ser_cli.model import _Conv1, _ConvBNReLU, _MaxPoolReLU

    for layer in trunk.layers:
        if isinstance(layer, _Conv1):
            outs = [F.relu(group[1](group[0](x))) for group in layer.groups]
            h, w = min(o.shape[2] for o in outs), min(o.shape[3] for o in outs)
            x = torch.cat([o[:, :, :h, :w] for o in outs], dim=1)
            if layer.pool:
                x = F.max_pool2d(x, 2)
        elif isinstance(layer, _ConvBNReLU):
            x = F.relu(layer[1](layer[0](x)))
        elif isinstance(layer, _MaxPoolReLU):
            x = F.max_pool2d(x, 2)
        else:
            assert isinstance(layer, torch.nn.Identity)  # the place of Conv1's pool
    return x


@pytest.mark.parametrize("pool_after", [(1, 2, 3), (2, 3), ()])
def test_relu_after_the_pool_is_the_same_network(pool_after):
    """ReLU runs after each max-pool (a quarter of the values): same outputs and gradients, bit
    for bit, as the textbook order, in training and in eval mode; same parameter names."""
    torch.manual_seed(0)
    net = CNN(ModelConfig(n_classes=3, pool_after=pool_after, widths=(6, 6, 8, 8),
                          conv1_channels=(4, 4)))
    x = _segments(3, seed=2)
    target = torch.tensor([0, 1, 2])
    for train_mode in (True, False):
        net.train(train_mode)
        grads = []
        for trunk in (net.trunk, lambda t: _textbook_trunk(net.trunk, t)):
            net.zero_grad()
            features = trunk(x)
            torch.nn.functional.cross_entropy(net.head(features), target).backward()
            grads.append((features.detach(), [p.grad.clone() for p in net.parameters()]))
        (ours, ours_grads), (ref, ref_grads) = grads
        assert torch.equal(ours, ref)
        for a, b in zip(ours_grads, ref_grads):
            assert torch.equal(a, b)
    names = [n for n, _ in net.trunk.named_parameters()]
    conv2 = 2 if 1 in pool_after else 1
    assert f"layers.{conv2}.0.weight" in names and "layers.0.groups.1.1.bias" in names


@pytest.mark.parametrize("head", HEADS)
def test_head_works_on_any_map_size(head):
    net = CNN(tiny_model_config(head=head)).eval()
    with torch.no_grad():
        for h, w in [(49, 24), (10, 3), (1, 1)]:
            assert net.head(torch.rand(2, 4, h, w)).shape == (2, 2)


def test_attention_mean_is_sum_over_positions():
    torch.manual_seed(0)
    summed = CNN(tiny_model_config(attention_reduce="sum")).eval()
    mean = CNN(tiny_model_config(attention_reduce="mean")).eval()
    mean.load_state_dict(summed.state_dict())
    features = torch.rand(2, 4, 7, 5)
    with torch.no_grad():
        torch.testing.assert_close(mean.head(features) * 35, summed.head(features))


@pytest.mark.parametrize("head", HEADS)
def test_scripted_model_matches_eager(head, tmp_path):
    torch.manual_seed(0)
    net = CNN(tiny_model_config(head=head)).eval()
    path = export_model(net, tmp_path / f"{head}.pt", _metadata(model_config=net.config))
    loaded = load_model(path)
    assert isinstance(loaded.module, torch.jit.ScriptModule)
    x = _segments(3)
    with torch.no_grad():
        expected = net(x)
        torch.testing.assert_close(loaded.module(x), expected, rtol=1e-5, atol=1e-5)
        # trunk and head stay callable separately in the file
        torch.testing.assert_close(loaded.module.head(loaded.module.trunk(x)), expected, rtol=1e-5, atol=1e-5)


def test_segment_alone_equals_segment_in_batch():
    torch.manual_seed(0)
    net = CNN(tiny_model_config()).eval()
    x = _segments(5, seed=1)
    with torch.no_grad():
        batch = net(x)
        for i in range(len(x)):
            torch.testing.assert_close(net(x[i : i + 1])[0], batch[i], rtol=1e-5, atol=1e-5)


def test_load_model_exposes_configs_and_hash(tiny_model):
    loaded = load_model(tiny_model)
    meta = loaded.metadata
    assert meta["format"] == MODEL_FORMAT
    assert loaded.classes == ["high", "low"]
    assert loaded.model_config == tiny_model_config()
    assert loaded.segment_config.score_hop_frames == 40
    assert loaded.feature_config.normalization == meta["feature_config"]["normalization"]
    for key in ("package_version", "torch_version", "command", "data", "created", "train_config"):
        assert key in meta
    assert meta["data"]["speakers"] == {"s1": 6, "s2": 6, "s3": 6, "s4": 6}
    assert len(loaded.sha256) == 64 and loaded.name == "tiny"


def test_missing_file(tmp_path):
    with pytest.raises(ModelFileError, match="nope.pt.*does not exist"):
        load_model(tmp_path / "nope.pt")


def test_not_a_zip(tmp_path):
    path = tmp_path / "text.pt"
    path.write_text("hello")
    with pytest.raises(ModelFileError, match="text.pt.*not a ser-cli model"):
        load_model(path)


def test_foreign_torchscript(tmp_path):
    path = tmp_path / "foreign.pt"
    torch.jit.save(torch.jit.script(torch.nn.Linear(2, 2)), str(path))
    with pytest.raises(ModelFileError, match="foreign.pt.*without ser_cli.json"):
        load_model(path)


def test_truncated_file(tiny_model, tmp_path):
    data = tiny_model.read_bytes()
    path = tmp_path / "cut.pt"
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(ModelFileError, match="cut.pt"):
        load_model(path)


def test_corrupt_member(tiny_model, tmp_path):
    """Flipped bytes inside a stored tensor: the zip CRC check names the file."""
    path = tmp_path / "flipped.pt"
    data = bytearray(tiny_model.read_bytes())
    with zipfile.ZipFile(tiny_model) as archive:
        info = max(archive.infolist(), key=lambda i: i.file_size)
    start = info.header_offset + 30 + len(info.filename.encode()) + len(info.extra) + 64
    for i in range(start, start + 16):
        data[i] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(ModelFileError, match="flipped.pt"):
        load_model(path)


def test_wrong_format_tag(tmp_path):
    net = CNN(tiny_model_config())
    path = export_model(net, tmp_path / "future.pt", {**_metadata(), "format": "ser-cli-model/99"})
    with pytest.raises(ModelFileError, match="future.pt.*unsupported model format"):
        read_metadata(path)


def test_class_count_mismatch(tmp_path):
    path = export_model(CNN(tiny_model_config()), tmp_path / "odd.pt", _metadata(classes=("a", "b", "c")))
    with pytest.raises(ModelFileError, match="odd.pt.*3 class names"):
        load_model(path)


def test_export_program():
    """The torch.export path (TorchScript's successor) works on the eager model."""
    program = export_program(CNN(tiny_model_config()))
    out = program.module()(torch.zeros(1, 1, 400, 200))
    assert out.shape == (1, 2)


def test_resolve_device():
    assert resolve_device("cpu") == torch.device("cpu")
    assert resolve_device("auto").type in ("cpu", "cuda")
    with pytest.raises(ConfigError, match="tpu"):
        resolve_device("tpu")


@pytest.mark.skipif(torch.cuda.is_available(), reason="CUDA present")
def test_cuda_unavailable_is_config_error():
    with pytest.raises(ConfigError, match="CUDA is not available"):
        resolve_device("cuda:0")


def test_resolve_precision(monkeypatch, tmp_path):
    cpu = torch.device("cpu")
    assert resolve_precision("fp32", cpu) == "fp32"
    assert resolve_precision("bf16", cpu) == "bf16"
    with pytest.raises(ConfigError, match="precision"):
        resolve_precision("fp16", cpu)
    avx2 = tmp_path / "avx2"
    avx2.write_text("processor\t: 0\nflags\t\t: fpu sse avx2 fma\n")
    amx = tmp_path / "amx"
    amx.write_text("processor\t: 0\nflags\t\t: fpu avx2 avx512f amx_bf16 amx_tile\n")
    assert not cpu_has_native_bf16(avx2)
    assert cpu_has_native_bf16(amx)
    assert not cpu_has_native_bf16(tmp_path / "missing")
    import ser_cli.model as model_module

    monkeypatch.setattr(model_module, "cpu_has_native_bf16", lambda: False)
    assert resolve_precision("auto", cpu) == "fp32"
    monkeypatch.setattr(model_module, "cpu_has_native_bf16", lambda: True)
    assert resolve_precision("auto", cpu) == "bf16"


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.parametrize("head", HEADS)
def test_cuda_matches_cpu(head, tmp_path):
    torch.manual_seed(0)
    net = CNN(tiny_model_config(head=head)).eval()
    path = export_model(net, tmp_path / "m.pt", _metadata(model_config=net.config))
    x = _segments(4)
    with torch.no_grad():
        expected = net(x)
        loaded = load_model(path, device="cuda")
        got = loaded.module(x.cuda()).cpu()
        torch.testing.assert_close(got, expected, rtol=1e-3, atol=1e-3)
        with torch.autocast("cuda", dtype=torch.bfloat16):
            bf16 = loaded.module(x.cuda()).float().cpu()
        torch.testing.assert_close(bf16, expected, rtol=0.1, atol=0.1)
    assert resolve_precision("auto", torch.device("cuda")) in ("bf16", "fp32")


def test_conv1_alone_is_the_filter_shape_study_network():
    """Fig. 2's network: one Conv1 group of 16 filters, GAP, linear 16 -> K."""
    config = ModelConfig(n_classes=4, widths=(), conv1_shapes=((2, 80),), conv1_channels=(16,),
                         head="gap", pool_after=())
    net = CNN(config).eval()
    assert config.trunk_channels == 16
    # conv weights 16*2*80, BN 2*16, linear 16*4 + 4
    assert sum(p.numel() for p in net.parameters()) == 16 * 2 * 80 + 2 * 16 + 16 * 4 + 4
    assert net(torch.zeros(3, 1, 400, 200)).shape == (3, 4)
    with pytest.raises(ConfigError, match="pool_after"):
        ModelConfig(widths=(), pool_after=(2,))
    with pytest.raises(ConfigError, match="widths"):
        ModelConfig(widths=(8, 8))


def test_dropout_acts_in_training_only_and_leaves_the_state_dict_alone(tmp_path):
    """Dropout on the trunk map changes training outputs from call to call and leaves eval
    outputs, the state-dict keys, the export and a default model's saved config as without it."""
    from ser_cli.model import config_dict

    plain_config = ModelConfig(n_classes=4, widths=(4, 4, 4, 4), pool_after=(1, 2, 3))
    config = ModelConfig(**{**config_dict(plain_config), "dropout": 0.5})
    torch.manual_seed(0)
    net, plain = CNN(config), CNN(plain_config)
    assert net.state_dict().keys() == plain.state_dict().keys()
    plain.load_state_dict(net.state_dict())
    x = _segments(4)
    net.train(), plain.train()
    assert not torch.allclose(net(x), net(x))  # a fresh mask each call
    torch.testing.assert_close(plain(x), plain(x))  # batch norm alone is deterministic
    net.eval(), plain.eval()
    with torch.no_grad():
        torch.testing.assert_close(net(x), plain(x))
        path = export_model(net, tmp_path / "dropout.pt", _metadata(("a", "b", "c", "d"), config))
        loaded = load_model(path)
        torch.testing.assert_close(loaded.module(x), plain(x), rtol=1e-5, atol=1e-5)
    assert loaded.model_config.dropout == 0.5
    assert "dropout" not in config_dict(plain_config)


def test_gap_batchnorm_is_an_affine_map_before_the_linear_layer(tmp_path):
    """In eval mode the normalised GAP head equals a plain GAP head whose linear layer has the
    batch norm folded in (same function class); it exports and reloads; it trains on a batch of
    one; and a model without it keeps the plain head's configs (so fingerprints and state-dict
    keys do not change)."""
    from ser_cli.model import config_dict

    config = ModelConfig(n_classes=4, widths=(), conv1_shapes=((10, 2),), conv1_channels=(16,),
                         head="gap", pool_after=(), gap_batchnorm=True)
    torch.manual_seed(0)
    net = CNN(config)
    x = _segments(6)
    net.train()
    net(x)  # move the running statistics away from their initial 0 / 1
    norm = net.head.norm
    with torch.no_grad():
        norm.weight.uniform_(0.5, 2.0)
        norm.bias.uniform_(-1.0, 1.0)
    net.eval()
    plain = CNN(ModelConfig(**{**config_dict(config), "gap_batchnorm": False})).eval()
    plain.trunk.load_state_dict(net.trunk.state_dict())
    scale = norm.weight / torch.sqrt(norm.running_var + norm.eps)
    with torch.no_grad():
        plain.head.fc.weight.copy_(net.head.fc.weight * scale)
        plain.head.fc.bias.copy_(net.head.fc.bias + net.head.fc.weight @ (norm.bias - norm.running_mean * scale))
        torch.testing.assert_close(plain(x), net(x), rtol=1e-4, atol=1e-4)
        pooled = net.trunk(x).mean(dim=(2, 3))
        assert not torch.allclose(net.head.norm(pooled), pooled, atol=1e-2)  # the norm does act
    path = export_model(net, tmp_path / "bn.pt", _metadata(("a", "b", "c", "d"), config))
    loaded = load_model(path)
    assert loaded.model_config.gap_batchnorm
    with torch.no_grad():
        torch.testing.assert_close(loaded.module(x), net(x), rtol=1e-5, atol=1e-5)
    assert "gap_batchnorm" not in config_dict(plain.config)
    # an epoch's last batch can be one segment: it trains, normalised by the running statistics
    net.train()
    before = norm.running_mean.clone()
    net(x[:1]).sum().backward()
    assert torch.equal(norm.running_mean, before)
    net(x[:2])
    assert not torch.equal(norm.running_mean, before)
    assert set(plain.state_dict()) == {k for k in net.state_dict() if not k.startswith("head.norm")}


_FAULTS_SCRIPT = """
import resource, sys, torch
from ser_cli.model import CNN, ModelConfig, keep_freed_memory
tuned = keep_freed_memory() if sys.argv[1] == "keep" else False
torch.set_num_threads(1)
net = CNN(ModelConfig(n_classes=4, pool_after=(1, 2, 3)))
x = torch.rand(8, 1, 400, 200)
for step in range(8):  # training steps: Conv1's output alone is 40 MB, freed after each
    if step == 2:
        before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    net(x).sum().backward()
print(tuned, resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
"""


@pytest.mark.skipif(sys.platform != "linux", reason="glibc malloc")
def test_keep_freed_memory_stops_refaulting_large_blocks():
    """Without it the large activations of every training step are mapped afresh (10 000 page
    faults per 40 MB); with it the freed blocks are reused. SER_SYSTEM_MALLOC=1 leaves malloc alone.

    Six steps are counted: with the tuning a step now and then still maps one block afresh
    (0 to about 12 000 faults over two steps were seen, 2 500 to 15 000 over six), which over
    two steps alone sometimes crossed a quarter of the untuned count (30 000 to 50 000; 76 000
    to 150 000 over six)."""
    import subprocess

    def faults(mode, **env):
        out = subprocess.run([sys.executable, "-c", _FAULTS_SCRIPT, mode], capture_output=True, text=True,
                             check=True, env={**os.environ, **env}).stdout.split()
        return out[0] == "True", int(out[1])

    plain_tuned, plain = faults("plain")
    tuned, kept = faults("keep")
    off, refused = faults("keep", SER_SYSTEM_MALLOC="1")
    assert not plain_tuned and tuned and not off
    assert plain > 2 * 10_000 and refused > 2 * 10_000
    assert kept < plain / 3
