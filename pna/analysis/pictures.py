"""Small RGB pictures for the NAM explorer, made without a matplotlib figure (each update of the
explorer redraws three of them): a colormap lookup, PNG/JPEG encoding, nearest enlargement and a
rectangle outline.

Example:
    >>> import numpy as np
    >>> picture = np.zeros((6, 6, 3), dtype=np.uint8)
    >>> outline(picture, 1, 1, 5, 5, (255, 0, 0), width=1)
    >>> int(picture[1, 1, 0]), int(picture[3, 3, 0]), enlarge(picture, 2).shape
    (255, 0, (12, 12, 3))
"""
from __future__ import annotations

import io

import numpy as np


def colormap(values: np.ndarray, name: str = "magma") -> np.ndarray:
    """Floats in [0, 1] -> RGB uint8 through a matplotlib colormap (a table lookup, no figure)."""
    from matplotlib import colormaps

    table = (colormaps[name](np.linspace(0, 1, 256))[:, :3] * 255).astype(np.uint8)
    return table[np.clip(values * 255, 0, 255).astype(np.int64)]


def encode(rgb: np.ndarray, format: str = "png") -> bytes:
    """PNG for flat colours (predictions, weights); JPEG for the photograph, a fifth of the PNG's size
    (an executed notebook stores the explorer's first view)."""
    from PIL import Image

    buffer = io.BytesIO()
    options = {"quality": 80} if format == "jpeg" else {"compress_level": 6}
    Image.fromarray(rgb).save(buffer, format=format.upper(), **options)
    return buffer.getvalue()


def enlarge(rgb: np.ndarray, factor: int) -> np.ndarray:
    """Each pixel repeated ``factor`` times along both axes."""
    return rgb.repeat(factor, axis=0).repeat(factor, axis=1)


def outline(rgb: np.ndarray, top: int, left: int, bottom: int, right: int, colour, width: int = 2) -> None:
    """Draw a rectangle's border (rows top..bottom-1, cols left..right-1) into ``rgb`` in place."""
    h, w = rgb.shape[:2]
    top, left, bottom, right = max(top, 0), max(left, 0), min(bottom, h), min(right, w)
    rgb[top:min(top + width, bottom), left:right] = colour
    rgb[max(bottom - width, top):bottom, left:right] = colour
    rgb[top:bottom, left:min(left + width, right)] = colour
    rgb[top:bottom, max(right - width, left):right] = colour
