"""Deep-stem ResNets from timm as segmentation backbones returning ``[res2, res3, res4, res5]``.

The paper's ResNet-50/101 use the "V1c" deep stem (three 3x3 convs, 32-32-64), which is timm's
``resnet50c`` / ``resnet101c``. Dilation follows timm's ``output_stride``: the stage that stops
striding gets dilation d and its first block d/2 (so OS8 gives strides (1, 2, 1, 1) and stage
dilations (1, 1, 2, 4), the first blocks of stages 3 and 4 using 1 and 2), which is mmseg's
``contract_dilation=True`` used by the authors' configs.
"""
from __future__ import annotations

import warnings
from pathlib import Path

import timm
import torch
from torch import Tensor, nn

# name -> (timm model name, extra timm kwargs). resnet18c and resnet10c_half (one block per stage,
# half width: 16-16-32 deep stem, 32..256 channels) are small stand-ins for CPU smoke runs.
RESNETS: dict[str, tuple[str, dict]] = {
    "resnet50c": ("resnet50c", {}),
    "resnet101c": ("resnet101c", {}),
    "resnet18c": ("resnet18", {"stem_type": "deep", "stem_width": 32}),
    "resnet10c_half": ("resnet10t", {"stem_type": "deep", "stem_width": 16, "channels": (32, 64, 128, 256)}),
}
VALID_OUTPUT_STRIDES = (8, 16, 32)


def check_pretrained_file(pretrained: str | Path | None, name: str) -> Path | None:
    """Resolve a local weights file; warn loudly when there is none (random initialisation)."""
    if pretrained is None:
        warnings.warn(
            f"backbone {name!r} is RANDOMLY INITIALISED: no pretrained weights file was given "
            f"(pass pretrained='path/to/weights.pth'); the paper used ImageNet-1k weights.",
            UserWarning,
            stacklevel=3,
        )
        return None
    path = Path(pretrained).expanduser()
    if not path.is_file():
        raise FileNotFoundError(f"pretrained weights file for backbone {name!r} not found: {path}")
    return path


class ResNetBackbone(nn.Module):
    """A timm ResNet returning the four stage outputs (nominal strides 4, 8, 16, 32).

    Example:
        >>> import warnings; warnings.simplefilter("ignore")
        >>> net = ResNetBackbone("resnet18c", output_stride=8)
        >>> [f.shape[-1] for f in net(torch.zeros(1, 3, 64, 64))], net.out_channels
        ([16, 8, 8, 8], [64, 128, 256, 512])
    """

    def __init__(self, name: str = "resnet50c", output_stride: int = 32, pretrained: str | Path | None = None):
        super().__init__()
        if name not in RESNETS:
            raise ValueError(f"unknown ResNet {name!r}; expected one of {sorted(RESNETS)}")
        if output_stride not in VALID_OUTPUT_STRIDES:
            raise ValueError(f"output_stride must be one of {VALID_OUTPUT_STRIDES}, got {output_stride}")
        timm_name, kwargs = RESNETS[name]
        path = check_pretrained_file(pretrained, name)
        if path is not None:  # timm reads the local file; nothing is fetched from the network
            kwargs = {**kwargs, "pretrained_cfg_overlay": dict(file=str(path))}
        self.body = timm.create_model(
            timm_name, pretrained=path is not None, features_only=True,
            out_indices=(1, 2, 3, 4), output_stride=output_stride, **kwargs,
        )
        self.name = name
        self.output_stride = output_stride
        self.out_channels: list[int] = list(self.body.feature_info.channels())
        self.strides: list[int] = list(self.body.feature_info.reduction())

    def forward(self, images: Tensor) -> list[Tensor]:
        return list(self.body(images))


def build_resnet(name: str, output_stride: int = 32, pretrained: str | Path | None = None) -> ResNetBackbone:
    return ResNetBackbone(name, output_stride, pretrained)
