"""Reading weight containers: ``torch.save`` files, Detectron2 pickles, safetensors, timm hub names.

Pickles are read by :mod:`pna.files` (an allow-list of weights types; nothing in the file runs).

Example:
    >>> import tempfile, torch
    >>> path = Path(tempfile.mkdtemp()) / "w.pth"
    >>> torch.save({"state_dict": {"module.backbone.conv.weight": torch.ones(2)}, "meta": {}}, path)
    >>> split_backbone_keys(read_checkpoint(path))
    ({'conv.weight': tensor([1., 1.])}, [])
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from pna.files import DamagedFileError, check_safetensors, load_file

HUB_PREFIXES = ("timm:", "hf-hub:")
CONTAINER_KEYS = ("state_dict", "model")  # mmcv/mmseg; Detectron2 and Microsoft Swin
BACKBONE_PREFIXES = ("backbone.bottom_up.", "backbone.")  # a whole Detectron2 / mmseg model


def read_checkpoint(path: str | Path) -> dict:
    """The state dict held by a weights file (unwrapped from ``'state_dict'`` / ``'model'``).

    Pickled files are read without running code in them (:func:`pna.files.load_file`): a file that
    needs more than tensors, numpy arrays and plain containers is refused unless the user trusts it.
    """
    path = Path(path)
    obj = read_safetensors(path) if path.suffix == ".safetensors" else load_file(path)
    for key in CONTAINER_KEYS:
        if isinstance(obj, dict) and isinstance(obj.get(key), dict):
            obj = obj[key]
            break
    if not isinstance(obj, dict) or not obj:
        kind = f"a dict with keys {sorted(map(str, obj))[:10]}" if isinstance(obj, dict) else type(obj).__name__
        raise ValueError(f"{path}: no state dict found (expected a dict of tensors, maybe under "
                         f"{' or '.join(CONTAINER_KEYS)}); the file holds {kind}")
    return obj


def read_safetensors(path: Path) -> dict[str, Tensor]:
    """The tensors of a safetensors file (no pickle inside), its header and extents checked against its
    size first (:func:`pna.files.check_safetensors`); a damaged file is one line naming it."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file as load_safetensors

    check_safetensors(path)
    try:
        return load_safetensors(str(path))
    except SafetensorError as error:  # its messages name neither the file nor, often, the cause
        cause = " ".join(f"SafetensorError: {error}".split())
        raise DamagedFileError(f"{path}: cannot be read: damaged, truncated or not a safetensors file ({cause})",
                               cause) from error


def split_backbone_keys(state: dict) -> tuple[dict[str, Tensor], list[str]]:
    """Tensors with ``module.`` / backbone prefixes stripped, and the keys left out (non-backbone, non-tensor)."""
    state = {str(k).removeprefix("module."): v for k, v in state.items()}
    outside: list[str] = []
    for prefix in BACKBONE_PREFIXES:
        if any(k.startswith(prefix) for k in state):
            outside = [k for k in state if not k.startswith(prefix)]
            state = {k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)}
            break
    tensors: dict[str, Tensor] = {}
    for key, value in state.items():
        if isinstance(value, (np.ndarray, np.generic)):
            value = torch.from_numpy(np.array(value, copy=True))  # keeps 0-d arrays 0-d (ascontiguousarray would not)
        if isinstance(value, Tensor):
            tensors[key] = value
        else:
            outside.append(key)
    return tensors, outside


def hub_state_dict(name: str, backbone: str) -> dict[str, Tensor]:
    """The state dict of a timm model with pretrained weights from the hub (needs the network)."""
    import timm

    try:
        model = timm.create_model(name.removeprefix("timm:"), pretrained=True)
    except Exception as error:
        raise RuntimeError(f"could not get hub weights {name!r} for backbone {backbone!r}: {error}. Hub names "
                           f"need the network (and HF_HUB_OFFLINE unset); offline, pass a local file") from error
    return model.state_dict()
