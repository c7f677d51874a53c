"""Pretrained backbone weights in the formats users hold, loaded strictly and reported by name.

``load_pretrained(body, pretrained, backbone, family)`` reads a file (or a ``timm:<name>`` /
``hf-hub:<repo>`` hub name, which needs the network), finds its format from its keys, renames the
keys to timm's, and loads them. It fails (``WeightsError`` naming the file and the keys) when a
backbone tensor is left unloaded or a shape differs; keys that are legitimately unused (classifier
``fc.*`` / ``head.*``, Swin's final ``norm.*`` and its ``relative_position_index`` / ``attn_mask``
buffers, a full model's non-backbone keys) are reported by name, not fatal.

Formats (containers: a plain dict, or one under ``'state_dict'`` / ``'model'``; ``module.`` and
``backbone.`` / ``backbone.bottom_up.`` prefixes are stripped; ``.safetensors`` files are read too):

| family | format | recognised by | container |
|---|---|---|---|
| resnet | timm | ``conv1.0.weight`` / ``conv1.weight`` | ``torch.save`` dict |
| resnet | mmseg / open-mmlab ResNetV1c | ``stem.0.weight`` (``stem.0/1/3/4/6/7``) | dict, maybe under ``state_dict`` |
| resnet | Detectron2 DeepLab ``R-52.pkl`` / ``R-103.pkl`` | ``stem.conv1.weight``, ``res2.0.*`` | pickle, numpy arrays under ``model`` |
| swin | Microsoft's official ImageNet-1k | ``layers.0.downsample.reduction.weight`` | dict under ``model`` |
| swin | timm | ``patch_embed.proj.weight`` | ``torch.save`` dict |
| hrnet | official HRNet ImageNet (= timm names) | ``transition1.0.0.weight`` | ``torch.save`` dict |

Microsoft puts the patch merging at the end of stage N, timm at the start of stage N+1: the keys
are renamed accordingly; no tensor is resized (a checkpoint of another window size is an error).

Weight files in a folder, for ``resolve_pretrained(folder, backbone)`` (the first name found wins;
``*`` matches open-mmlab's hash suffix):

| backbone | file names looked for |
|---|---|
| resnet50c | ``resnet50_v1c.pth``, ``resnet50_v1c-*.pth``, ``resnet50c.pth``, ``resnet50c.safetensors`` |
| resnet101c | ``resnet101_v1c.pth``, ``resnet101_v1c-*.pth``, ``resnet101c.pth``, ``resnet101c.safetensors`` |
| resnet52 | ``R-52.pkl``, ``resnet52.pth`` |
| resnet103 | ``R-103.pkl``, ``resnet103.pth`` |
| swin_t | ``swin_tiny_patch4_window7_224.pth``, ``swin_t.pth``, ``swin_tiny_patch4_window7_224.safetensors`` |
| swin_b | ``swin_base_patch4_window7_224.pth``, ``swin_b.pth``, ``swin_base_patch4_window7_224.safetensors`` |
| hrnet_w48 | ``hrnetv2_w48_imagenet_pretrained.pth``, ``hrnet_w48.pth`` |

The smoke backbones (``resnet10c_half``, ``resnet18c``) have no ImageNet weights: they always
start from random init (``resolve_pretrained`` gives None, ``allow_random_init=False`` does not apply).
"""
from __future__ import annotations

import re
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Mapping

from torch import nn

from .checkpoint_io import HUB_PREFIXES, hub_state_dict, read_checkpoint, split_backbone_keys

WEIGHT_FILES: dict[str, tuple[str, ...]] = {
    "resnet50c": ("resnet50_v1c.pth", "resnet50_v1c-*.pth", "resnet50c.pth", "resnet50c.safetensors"),
    "resnet101c": ("resnet101_v1c.pth", "resnet101_v1c-*.pth", "resnet101c.pth", "resnet101c.safetensors"),
    "resnet52": ("R-52.pkl", "resnet52.pth"),
    "resnet103": ("R-103.pkl", "resnet103.pth"),
    "swin_t": ("swin_tiny_patch4_window7_224.pth", "swin_t.pth", "swin_tiny_patch4_window7_224.safetensors"),
    "swin_b": ("swin_base_patch4_window7_224.pth", "swin_b.pth", "swin_base_patch4_window7_224.safetensors"),
    "hrnet_w48": ("hrnetv2_w48_imagenet_pretrained.pth", "hrnet_w48.pth"),  # SegFix's (docs/refiners.md)
}
RANDOM_INIT_BACKBONES = ("resnet10c_half", "resnet18c")  # CPU smoke stand-ins, never pretrained
# File keys a backbone legitimately does not use: classifiers, Swin's final norm and its buffers,
# HRNet's classification head (its channel-increase, downsampling and final layers).
UNUSED_KEYS = re.compile(r"^(fc|fc1000|linear|head|norm|classifier|incre_modules|downsamp_modules|final_layer)\.|"
                         r"(relative_position_index|attn_mask)$")
ABSENT_OK = re.compile(r"num_batches_tracked$")  # a BN counter; Detectron2 files do not store it
MAX_LISTED = 25


class WeightsError(ValueError):
    """A weights file that does not fit the backbone (unknown format, unloaded keys, shapes)."""


@dataclass(frozen=True)
class WeightFormat:
    name: str
    signature: tuple[str, ...]  # any of these keys identifies the format
    rename: Callable[[str], str]  # file key -> timm key


def _timm(key: str) -> str:
    return key


_V1C_STEM = {"0": "conv1.0", "1": "conv1.1", "3": "conv1.3", "4": "conv1.4", "6": "conv1.6", "7": "bn1"}


def _mmseg_v1c(key: str) -> str:
    match = re.fullmatch(r"stem\.(\d+)\.(.+)", key)
    if match is None or match[1] not in _V1C_STEM:
        return key
    return f"{_V1C_STEM[match[1]]}.{match[2]}"


_D2_STEM = {"conv1": ("conv1.0", "conv1.1"), "conv2": ("conv1.3", "conv1.4"), "conv3": ("conv1.6", "bn1")}


def _detectron2(key: str) -> str:
    stem = re.fullmatch(r"stem\.(conv[123])\.(norm\.)?(\w+)", key)
    if stem:
        conv, norm = _D2_STEM[stem[1]]
        return f"{norm if stem[2] else conv}.{stem[3]}"
    block = re.fullmatch(r"res([2-5])\.(\d+)\.(conv[123]|shortcut)\.(norm\.)?(\w+)", key)
    if block is None:
        return key
    stage, index, layer, norm, leaf = block.groups()
    if layer == "shortcut":
        name = "downsample.1" if norm else "downsample.0"
    else:
        name = f"bn{layer[-1]}" if norm else layer
    return f"layer{int(stage) - 1}.{index}.{name}.{leaf}"


def _swin_microsoft(key: str) -> str:
    key = re.sub(r"^layers\.(\d+)\.downsample\.", lambda m: f"layers.{int(m[1]) + 1}.downsample.", key)
    return re.sub(r"^head\.", "head.fc.", key)


FORMATS: dict[str, list[WeightFormat]] = {  # most specific first
    "resnet": [
        WeightFormat("Detectron2 DeepLab ResNet (R-52/R-103.pkl)", ("stem.conv1.weight", "res2.0.conv1.weight"), _detectron2),
        WeightFormat("mmseg/open-mmlab ResNetV1c", ("stem.0.weight",), _mmseg_v1c),
        WeightFormat("timm ResNet", ("conv1.0.weight", "conv1.weight"), _timm),
    ],
    "swin": [
        WeightFormat("Microsoft Swin (official)", ("layers.0.downsample.reduction.weight",), _swin_microsoft),
        WeightFormat("timm Swin", ("patch_embed.proj.weight",), _timm),
    ],
    "hrnet": [WeightFormat("official HRNet ImageNet / timm HRNet", ("transition1.0.0.weight",), _timm)],
}


@dataclass
class LoadReport:
    source: str
    format: str
    loaded: list[str] = field(default_factory=list)  # backbone keys (timm names) set from the file
    unused: list[str] = field(default_factory=list)  # file keys legitimately not used
    unexpected: list[str] = field(default_factory=list)  # other file keys the backbone has no place for
    absent: list[str] = field(default_factory=list)  # backbone keys the file lacks, harmlessly

    def summary(self, backbone: str) -> str:
        lines = [f"{backbone}: loaded {len(self.loaded)} tensors from {self.source} ({self.format})"]
        for label, keys in [("unused (classifier/buffers)", self.unused), ("unexpected, ignored", self.unexpected),
                            ("not in the file, kept as initialised", self.absent)]:
            if keys:
                lines.append(f"  {label}: {_listing(keys)}")
        return "\n".join(lines)


def _listing(keys: list[str]) -> str:
    shown = ", ".join(keys[:MAX_LISTED])
    return shown + (f", ... ({len(keys) - MAX_LISTED} more)" if len(keys) > MAX_LISTED else "")


def detect_format(keys: list[str], family: str, source: str) -> WeightFormat:
    """The format of a state dict from its key names (``WeightsError`` listing those tried)."""
    for fmt in FORMATS[family]:
        if any(k in keys for k in fmt.signature):
            return fmt
    tried = "; ".join(f"{f.name} (key {' or '.join(f.signature)})" for f in FORMATS[family])
    raise WeightsError(f"{source}: unknown weights format for a {family} backbone. Tried: {tried}. "
                       f"The file's first keys: {_listing(keys[:10])}")


def require_weights_or_warn(pretrained: object, backbone: str, allow_random_init: bool = True) -> None:
    """Random init is an error when ``allow_random_init`` is False (smoke backbones excepted), else warned."""
    if pretrained is not None:
        return
    if not allow_random_init and backbone not in RANDOM_INIT_BACKBONES:
        raise ValueError(f"backbone {backbone!r} has no pretrained weights and allow_random_init=False: pass "
                         f"pretrained=<file or timm:<name>> (see resolve_pretrained for the file names looked for)")
    warnings.warn(f"backbone {backbone!r} is RANDOMLY INITIALISED: no pretrained weights file was given "
                  f"(pass pretrained='path/to/weights.pth'); the paper used ImageNet-1k weights.",
                  UserWarning, stacklevel=4)


def load_pretrained(body: nn.Module, pretrained: str | Path, backbone: str, family: str) -> LoadReport:
    """Load ``pretrained`` into ``body`` (timm key names); print and return what was loaded."""
    source, state = _fetch(pretrained, backbone)
    state, outside = split_backbone_keys(state)
    fmt = detect_format(list(state), family, source)
    expected = body.state_dict()
    renamed: dict[str, str] = {}  # timm key -> file key
    report = LoadReport(source, fmt.name, unexpected=outside)
    for file_key in state:
        key = fmt.rename(file_key)
        if key in renamed:
            raise WeightsError(f"{source}: keys {renamed[key]!r} and {file_key!r} both map to {key!r}")
        if key in expected:
            renamed[key] = file_key
        else:
            (report.unused if UNUSED_KEYS.search(key) else report.unexpected).append(file_key)
    missing = [k for k in expected if k not in renamed]
    report.absent = [k for k in missing if ABSENT_OK.search(k)]
    fatal_missing = [k for k in missing if not ABSENT_OK.search(k)]
    mismatched = [f"{f} {tuple(state[f].shape)} -> {k} {tuple(expected[k].shape)}"
                  for k, f in renamed.items() if tuple(state[f].shape) != tuple(expected[k].shape)]
    if fatal_missing or mismatched:
        problems = [f"{len(fatal_missing)} backbone keys not in the file: {_listing(fatal_missing)}"] if fatal_missing else []
        problems += [f"{len(mismatched)} shape mismatches (file -> model): {_listing(mismatched)}"] if mismatched else []
        if report.unexpected:
            problems.append(f"file keys with no place in the backbone: {_listing(report.unexpected)}")
        raise WeightsError(f"{source} does not fit backbone {backbone!r} (read as {fmt.name}): " + "; ".join(problems))
    body.load_state_dict({k: state[f] for k, f in renamed.items()}, strict=False)
    report.loaded = list(renamed)
    print(report.summary(backbone), flush=True)
    return report


def _fetch(pretrained: str | Path, backbone: str) -> tuple[str, dict]:
    if isinstance(pretrained, str) and pretrained.startswith(HUB_PREFIXES):
        return pretrained, hub_state_dict(pretrained, backbone)
    path = Path(pretrained).expanduser()
    if path.is_dir():
        raise IsADirectoryError(f"pretrained for backbone {backbone!r} is a folder: {path}; pass a file, or pick "
                                f"it with resolve_pretrained(folder, {backbone!r})")
    if not path.is_file():
        raise FileNotFoundError(f"pretrained weights file for backbone {backbone!r} not found: {path} "
                                f"(a timm hub name is written 'timm:<name>' or 'hf-hub:<repo>')")
    return str(path), read_checkpoint(path)


def resolve_pretrained(weights: str | Path | Mapping[str, str | Path | None] | None, backbone: str) -> str | Path | None:
    """The weights for ``backbone``: None, a folder with files under the documented names, or a mapping.

    A folder (or a mapping) that lacks a file for a pretrained backbone is an error; smoke backbones
    get None. A single file or a hub name is returned as it is.

    Example:
        >>> import tempfile; folder = Path(tempfile.mkdtemp()); (folder / "R-52.pkl").touch()
        >>> resolve_pretrained(folder, "resnet52").name, resolve_pretrained(folder, "resnet18c")
        ('R-52.pkl', None)
        >>> resolve_pretrained({"swin_t": "timm:swin_tiny_patch4_window7_224.ms_in1k"}, "swin_t")
        'timm:swin_tiny_patch4_window7_224.ms_in1k'
    """
    if weights is None or backbone in RANDOM_INIT_BACKBONES:
        return None
    if isinstance(weights, Mapping):
        if backbone not in weights:
            raise ValueError(f"weights mapping has no entry for backbone {backbone!r}; it has {sorted(weights)}")
        return _existing(weights[backbone], backbone)
    if isinstance(weights, str) and weights.startswith(HUB_PREFIXES):
        return weights
    folder = Path(weights).expanduser()
    if folder.is_file():
        return folder
    if not folder.is_dir():
        raise FileNotFoundError(f"weights folder {folder} (for backbone {backbone!r}) does not exist")
    if backbone not in WEIGHT_FILES:
        raise ValueError(f"no weight file names are documented for backbone {backbone!r}; pass a mapping "
                         f"{{{backbone!r}: 'path'}} (documented: {sorted(WEIGHT_FILES)})")
    for pattern in WEIGHT_FILES[backbone]:
        found = sorted(folder.glob(pattern))
        if len(found) > 1:
            raise ValueError(f"weights folder {folder}: several files match {pattern!r} for {backbone!r}: "
                             f"{[p.name for p in found]}; keep one")
        if found:
            return found[0]
    raise FileNotFoundError(f"weights folder {folder} has no file for backbone {backbone!r}: looked for "
                            f"{list(WEIGHT_FILES[backbone])}; it has {sorted(p.name for p in folder.iterdir())}")


def _existing(value: str | Path | None, backbone: str) -> str | Path | None:
    if value is None or (isinstance(value, str) and value.startswith(HUB_PREFIXES)):
        return value
    if not Path(value).expanduser().is_file():
        raise FileNotFoundError(f"weights file for backbone {backbone!r} not found: {value}")
    return Path(value).expanduser()
