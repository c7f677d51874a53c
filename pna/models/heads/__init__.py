"""Coarse heads: ``head(feats: list[Tensor]) -> P0 logits`` with feats = [res2, res3, res4, res5].

``HEADS`` maps a name to a builder ``(in_channels: list[int], num_classes, channels=None, **kwargs)``;
``channels=None`` means the head's own default width. Add a head with one line here.
"""
from __future__ import annotations

from typing import Callable

from torch import nn

from .aspp import ASPPHead
from .deeplabv3plus import DeepLabV3PlusHead
from .fcn import FCNHead, build_aux_fcn_head, build_fcn_head
from .fpn import SemanticFPNHead
from .psp import PSPHead
from .upernet import UPerHead


def _with_default_width(cls: type[nn.Module]) -> Callable[..., nn.Module]:
    """A builder ``(in_channels, num_classes, channels=None, **kw)``; None keeps the class default."""
    def build(in_channels: list[int], num_classes: int, channels: int | None = None, **kwargs) -> nn.Module:
        if channels is not None:
            kwargs["channels"] = channels
        return cls(in_channels, num_classes, **kwargs)
    build.__doc__ = f"Build a {cls.__name__} (channels=None: its default width)."
    return build


HEADS: dict[str, Callable[..., nn.Module]] = {
    "fcn": build_fcn_head,
    "aspp": _with_default_width(ASPPHead),              # DeepLabV3
    "psp": _with_default_width(PSPHead),                # PSPNet
    "fpn": _with_default_width(SemanticFPNHead),        # semantic FPN
    "upernet": _with_default_width(UPerHead),           # UperNet (PSP + FPN fusion)
    "deeplabv3plus": _with_default_width(DeepLabV3PlusHead),
}
AUX_HEADS: dict[str, Callable[..., nn.Module]] = {
    "fcn": build_aux_fcn_head,
}


def build_head(name: str, in_channels: list[int], num_classes: int, channels: int | None = None,
               **kwargs) -> nn.Module:
    """Build a coarse head by name.

    Example:
        >>> import torch
        >>> head = build_head("fcn", [8, 16, 32, 64], num_classes=3, channels=8)
        >>> head([torch.zeros(1, c, 2, 2) for c in (8, 16, 32, 64)]).shape
        torch.Size([1, 3, 2, 2])
    """
    if name not in HEADS:
        from pna.errors import unknown_name_error
        raise unknown_name_error("head", name, sorted(HEADS), "pna.models.heads.HEADS")
    return HEADS[name](in_channels, num_classes, channels=channels, **kwargs)


def build_aux_head(name: str, in_channels: list[int], num_classes: int, channels: int | None = None) -> nn.Module:
    if name not in AUX_HEADS:
        from pna.errors import unknown_name_error
        raise unknown_name_error("auxiliary head", name, sorted(AUX_HEADS), "pna.models.heads.AUX_HEADS")
    return AUX_HEADS[name](in_channels, num_classes, channels=channels)


__all__ = ["AUX_HEADS", "ASPPHead", "DeepLabV3PlusHead", "HEADS", "FCNHead", "PSPHead", "SemanticFPNHead",
           "UPerHead", "build_aux_head", "build_head"]
