"""Pretrained weights in the formats users hold: each tensor lands where it should; misfits fail by name.

Each test writes a state dict in a format's own key names, shapes and container (random values) and
checks the backbone tensor each file key must land in (the key tables below are the formats' facts:
docs/authors_audit.csv, docs/authors_checkpoints.md).
"""
import pickle
import re
import warnings

import pytest
import timm
import torch
from safetensors.torch import save_file

from pna.models.backbones import WeightsError, build_backbone, resolve_pretrained
from pna.models.backbones.swin import SWINS

V1C_STEM = {"stem.0": "conv1.0", "stem.1": "conv1.1", "stem.3": "conv1.3", "stem.4": "conv1.4",
            "stem.6": "conv1.6", "stem.7": "bn1"}
D2_STEM = {"stem.conv1": "conv1.0", "stem.conv1.norm": "conv1.1", "stem.conv2": "conv1.3",
           "stem.conv2.norm": "conv1.4", "stem.conv3": "conv1.6", "stem.conv3.norm": "bn1"}
BN = ("weight", "bias", "running_mean", "running_var")


def randomised(state):
    gen = torch.Generator().manual_seed(0)
    return {k: torch.randn(v.shape, generator=gen) if v.is_floating_point() else v.clone() for k, v in state.items()}


def build(name, output_stride=32, **kwargs):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return build_backbone(name, output_stride, **kwargs)


def assert_landed(net_state, file_state, target_of):
    """Every file tensor with a target equals the backbone tensor there; returns the targets."""
    targets = {}
    for key, value in file_state.items():
        target = target_of(key)
        if target is not None:
            assert torch.equal(net_state[target], torch.as_tensor(value)), f"{key} -> {target}"
            targets[key] = target
    return targets


# ---- ResNet: timm, mmseg V1c, Detectron2 ------------------------------------------------------

@pytest.fixture(scope="module")
def r50c_timm_state():
    return randomised(timm.create_model("resnet50c").state_dict())  # with the classifier fc.*


def test_timm_resnet_file(tmp_path, r50c_timm_state):
    torch.save(r50c_timm_state, tmp_path / "r50c.pth")
    net = build("resnet50c", pretrained=tmp_path / "r50c.pth")
    body = net.body.state_dict()
    assert_landed(body, r50c_timm_state, lambda k: None if k.startswith("fc.") else k)
    assert set(body) == set(r50c_timm_state) - {"fc.weight", "fc.bias"}
    assert net.weights_report.unused == ["fc.weight", "fc.bias"] and net.weights_report.format == "timm ResNet"


def v1c_names(timm_state):
    """timm -> mmseg ResNetV1c names (the open-mmlab file keeps its classifier fc.*)."""
    inverse = {v: k for k, v in V1C_STEM.items()}
    out = {}
    for key, value in timm_state.items():
        module, leaf = key.rsplit(".", 1)
        out[f"{inverse.get(module, module)}.{leaf}"] = value
    return out


def test_mmseg_v1c_checkpoint_under_state_dict(tmp_path, r50c_timm_state):
    mmseg = v1c_names(r50c_timm_state)
    assert {"stem.0.weight", "stem.7.running_var", "layer1.0.downsample.0.weight", "layer4.2.bn3.bias"} <= set(mmseg)
    assert tuple(mmseg["stem.0.weight"].shape) == (32, 3, 3, 3) and tuple(mmseg["stem.6.weight"].shape) == (64, 32, 3, 3)
    torch.save({"meta": {"epoch": 100}, "state_dict": mmseg}, tmp_path / "resnet50_v1c-2cccc1ad.pth")
    net = build("resnet50c", 16, pretrained=resolve_pretrained(tmp_path, "resnet50c"))

    def target(key):
        module, leaf = key.rsplit(".", 1)
        return None if key.startswith("fc.") else f"{V1C_STEM.get(module, module)}.{leaf}"

    landed = assert_landed(net.body.state_dict(), mmseg, target)
    assert set(landed.values()) == set(net.body.state_dict())  # every backbone tensor came from the file
    assert "mmseg" in net.weights_report.format and net.weights_report.unused == ["fc.weight", "fc.bias"]


def d2_state(net):
    """A Detectron2 DeepLab R-52/R-103 'model' dict (numpy) from the backbone's shapes."""
    body = net.body.state_dict()
    out = {}
    for d2, timm_name in D2_STEM.items():
        for leaf in (BN if d2.endswith("norm") else ("weight",)):
            out[f"{d2}.{leaf}"] = body[f"{timm_name}.{leaf}"]
    for stage in range(2, 6):
        for block in range(len(getattr(net.body, f"layer{stage - 1}"))):
            prefix = f"res{stage}.{block}"
            for conv in ["conv1", "conv2", "conv3"] + (["shortcut"] if block == 0 else []):
                out[f"{prefix}.{conv}.weight"] = body[d2_target(f"{prefix}.{conv}.weight")]
                for leaf in BN:
                    out[f"{prefix}.{conv}.norm.{leaf}"] = body[d2_target(f"{prefix}.{conv}.norm.{leaf}")]
    return {k: v.numpy() for k, v in randomised(out).items()}


def d2_target(key):
    """Where a Detectron2 key belongs in timm's ResNet (docs/authors_checkpoints.md, Detectron2 branch)."""
    stem = re.fullmatch(r"(stem\.conv\d(?:\.norm)?)\.(\w+)", key)
    if stem:
        return f"{D2_STEM[stem[1]]}.{stem[2]}"
    stage, block, conv, norm, leaf = re.fullmatch(r"res(\d)\.(\d+)\.(\w+?)\.(norm\.)?(\w+)", key).groups()
    if conv == "shortcut":
        return f"layer{int(stage) - 1}.{block}.downsample.{1 if norm else 0}.{leaf}"
    return f"layer{int(stage) - 1}.{block}.{'bn' + conv[-1] if norm else conv}.{leaf}"


@pytest.mark.parametrize("name,file_name", [("resnet52", "R-52.pkl"), pytest.param("resnet103", "R-103.pkl", marks=pytest.mark.slow)])
def test_detectron2_pickle(tmp_path, name, file_name):
    state = d2_state(build(name))
    assert tuple(state["stem.conv3.weight"].shape) == (128, 64, 3, 3)
    assert tuple(state["res2.0.shortcut.weight"].shape) == (256, 128, 1, 1)
    with open(tmp_path / file_name, "wb") as f:
        pickle.dump({"model": state, "__author__": "test", "matching_heuristics": True}, f)
    net = build(name, 16, pretrained=resolve_pretrained(tmp_path, name))
    landed = assert_landed(net.body.state_dict(), state, d2_target)
    expected = {k for k in net.body.state_dict() if not k.endswith("num_batches_tracked")}
    assert set(landed.values()) == expected and len(landed) == len(state)
    report = net.weights_report
    assert report.absent and all(k.endswith("num_batches_tracked") for k in report.absent)  # d2 has no counters
    assert not report.unused and not report.unexpected


def test_whole_detectron2_model_gives_its_backbone(tmp_path):
    net = build("resnet52")
    state = {f"backbone.bottom_up.{k}": v for k, v in d2_state(net).items()}
    state["backbone.fpn_lateral2.weight"] = torch.zeros(256, 256, 1, 1).numpy()
    torch.save({"model": {k: torch.from_numpy(v) for k, v in state.items()}}, tmp_path / "model_final.pth")
    loaded = build("resnet52", pretrained=tmp_path / "model_final.pth")
    assert loaded.weights_report.unexpected == ["backbone.fpn_lateral2.weight"]
    key = "backbone.bottom_up.res4.5.conv2.weight"
    assert torch.equal(loaded.body.layer3[5].conv2.weight, torch.from_numpy(state[key]))


def test_safetensors_file(tmp_path):
    state = randomised(timm.create_model("resnet18", stem_type="deep", stem_width=32).state_dict())
    save_file(state, str(tmp_path / "r18c.safetensors"))
    net = build("resnet18c", pretrained=tmp_path / "r18c.safetensors")
    assert torch.equal(net.body.layer4[1].conv2.weight, state["layer4.1.conv2.weight"])


# ---- Swin: Microsoft's official layout --------------------------------------------------------

def microsoft_swin_state(name):
    """Microsoft's layout: merging at the end of stage N (timm: start of N+1), head.*, buffers kept."""
    full = timm.create_model(SWINS[name])
    state = {}
    for key, value in randomised(full.state_dict()).items():
        key = re.sub(r"^layers\.(\d+)\.downsample", lambda m: f"layers.{int(m[1]) - 1}.downsample", key)
        state[key.replace("head.fc.", "head.")] = value
    state.update({k: v.clone() for k, v in full.named_buffers()})  # relative_position_index, attn_mask
    return state


def microsoft_target(key):
    if key.startswith(("head.", "norm.")) or key.endswith(("relative_position_index", "attn_mask")):
        return None
    return re.sub(r"^layers\.(\d+)\.downsample", lambda m: f"layers.{int(m[1]) + 1}.downsample", key)


@pytest.fixture(scope="module")
def swin_t_microsoft():
    return microsoft_swin_state("swin_t")


def test_microsoft_swin_checkpoint(tmp_path, swin_t_microsoft):
    state = swin_t_microsoft
    assert {"layers.0.downsample.reduction.weight", "layers.0.blocks.1.attn_mask", "head.weight", "norm.weight",
            "layers.2.blocks.0.attn.relative_position_index"} <= set(state)
    assert "layers.3.downsample.reduction.weight" not in state
    torch.save({"model": state}, tmp_path / "swin_tiny_patch4_window7_224.pth")
    net = build("swin_t", pretrained=resolve_pretrained(tmp_path, "swin_t"))
    landed = assert_landed(net.body.state_dict(), state, microsoft_target)
    assert set(landed.values()) == set(net.body.state_dict())
    unused = net.weights_report.unused
    assert {"head.weight", "head.bias", "norm.weight", "layers.0.blocks.1.attn_mask"} <= set(unused)
    assert len(unused) == len(state) - len(landed) and not net.weights_report.unexpected


# ---- misfits fail, naming the file and the keys -----------------------------------------------

def test_renamed_key_is_named(tmp_path, r50c_timm_state):
    mmseg = v1c_names(r50c_timm_state)
    mmseg["stem.8.weight"] = mmseg.pop("stem.7.weight")
    torch.save({"state_dict": mmseg}, tmp_path / "v1c.pth")
    with pytest.raises(WeightsError, match=r"v1c\.pth.*bn1\.weight.*stem\.8\.weight"):
        build("resnet50c", pretrained=tmp_path / "v1c.pth")


def test_missing_key_is_named(tmp_path):
    state = d2_state(build("resnet52"))
    del state["res3.1.conv2.weight"]
    with open(tmp_path / "R-52.pkl", "wb") as f:
        pickle.dump({"model": state}, f)
    with pytest.raises(WeightsError, match=r"R-52\.pkl.*1 backbone keys not in the file: layer2\.1\.conv2\.weight"):
        build("resnet52", pretrained=tmp_path / "R-52.pkl")


def test_wrong_shape_is_named(tmp_path, swin_t_microsoft):
    state = dict(swin_t_microsoft)
    state["layers.1.blocks.0.attn.relative_position_bias_table"] = torch.zeros(23 * 23, 6)  # window 12
    torch.save({"model": state}, tmp_path / "swin_window12.pth")
    with pytest.raises(WeightsError, match=r"swin_window12\.pth.*relative_position_bias_table \(529, 6\) -> "
                                           r"layers\.1\.blocks\.0\.attn\.relative_position_bias_table \(169, 6\)"):
        build("swin_t", pretrained=tmp_path / "swin_window12.pth")


def test_v1c_file_into_deep64_stem_is_a_shape_error(tmp_path, r50c_timm_state):
    torch.save(v1c_names(r50c_timm_state), tmp_path / "resnet50_v1c.pth")
    with pytest.raises(WeightsError, match=r"stem\.0\.weight \(32, 3, 3, 3\) -> conv1\.0\.weight \(64, 3, 3, 3\)"):
        build("resnet52", pretrained=tmp_path / "resnet50_v1c.pth")


def test_unknown_format_lists_those_tried(tmp_path):
    torch.save({"encoder.conv.weight": torch.zeros(1)}, tmp_path / "odd.pth")
    with pytest.raises(WeightsError, match=r"odd\.pth.*Detectron2.*mmseg.*timm ResNet.*encoder\.conv\.weight"):
        build("resnet18c", pretrained=tmp_path / "odd.pth")
    with pytest.raises(WeightsError, match=r"odd\.pth.*Microsoft Swin.*timm Swin"):
        build("swin_t", pretrained=tmp_path / "odd.pth")
    torch.save([1, 2], tmp_path / "list.pth")
    with pytest.raises(ValueError, match=r"list\.pth: no state dict"):
        build("resnet18c", pretrained=tmp_path / "list.pth")


# ---- random init, hub names, resolve_pretrained ----------------------------------------------

def test_random_init_refused_unless_allowed():
    for name in ("resnet50c", "resnet52", "swin_b"):
        with pytest.raises(ValueError, match=f"{name}.*allow_random_init=False"):
            build_backbone(name, allow_random_init=False)
    with pytest.warns(UserWarning, match="RANDOMLY INITIALISED"):  # smoke backbones keep random init
        build_backbone("resnet10c_half", allow_random_init=False)


def test_timm_hub_name(monkeypatch):
    source = randomised(timm.create_model("resnet18", stem_type="deep", stem_width=32).state_dict())
    real_create = timm.create_model
    asked = []

    def fake_create(name, pretrained=False, **kwargs):  # the hub download, offline
        if not pretrained:
            return real_create(name, **kwargs)
        asked.append(name)
        model = real_create("resnet18", stem_type="deep", stem_width=32)
        model.load_state_dict(source)
        return model

    monkeypatch.setattr(timm, "create_model", fake_create)
    net = build("resnet18c", pretrained="timm:resnet18c.fake_in1k")
    assert asked == ["resnet18c.fake_in1k"] and torch.equal(net.body.conv1[0].weight, source["conv1.0.weight"])

    def offline(name, pretrained=False, **kwargs):
        if pretrained:
            raise OSError("offline")
        return real_create(name, **kwargs)

    monkeypatch.setattr(timm, "create_model", offline)
    with pytest.raises(RuntimeError, match="hf-hub:timm/x.*network"):
        build("resnet18c", pretrained="hf-hub:timm/x")


def test_resolve_pretrained(tmp_path):
    (tmp_path / "R-52.pkl").touch()
    (tmp_path / "resnet101_v1c-e67eebb6.pth").touch()
    assert resolve_pretrained(None, "resnet52") is None
    assert resolve_pretrained(tmp_path, "resnet52") == tmp_path / "R-52.pkl"
    assert resolve_pretrained(str(tmp_path), "resnet101c") == tmp_path / "resnet101_v1c-e67eebb6.pth"
    assert resolve_pretrained(tmp_path, "resnet18c") is None  # smoke backbone: random init
    with pytest.raises(FileNotFoundError, match=r"no file for backbone 'swin_b'.*swin_base_patch4_window7_224\.pth.*"
                                                r"it has \['R-52\.pkl', 'resnet101_v1c-e67eebb6\.pth'\]"):
        resolve_pretrained(tmp_path, "swin_b")
    assert resolve_pretrained({"resnet52": tmp_path / "R-52.pkl"}, "resnet52") == tmp_path / "R-52.pkl"
    assert resolve_pretrained({"swin_t": "timm:swin_tiny_patch4_window7_224.ms_in1k"}, "swin_t").startswith("timm:")
    with pytest.raises(ValueError, match=r"no entry for backbone 'resnet103'.*\['resnet52'\]"):
        resolve_pretrained({"resnet52": tmp_path / "R-52.pkl"}, "resnet103")
    with pytest.raises(FileNotFoundError, match="R-103.pkl"):
        resolve_pretrained({"resnet103": tmp_path / "R-103.pkl"}, "resnet103")
    with pytest.raises(FileNotFoundError, match="no_such_folder"):
        resolve_pretrained(tmp_path / "no_such_folder", "resnet52")
    with pytest.raises(IsADirectoryError, match="resolve_pretrained"):
        build("resnet52", pretrained=tmp_path)
    (tmp_path / "resnet101_v1c-00000000.pth").touch()
    with pytest.raises(ValueError, match="several files match"):
        resolve_pretrained(tmp_path, "resnet101c")
