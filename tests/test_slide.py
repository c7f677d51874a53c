"""Sliding-window inference (``predict_stage_logits(mode="slide")``) with non-square crops and strides,
checked with a model whose output is the window's own position: a swap of height and width, a wrong
last window or a wrong average changes the result.

The windows are those of mmseg's slide inference (the convention both branches' whole-image-or-slide
protocols follow): along an axis of n pixels with crop c and stride s there are
max(n - c + s - 1, 0) // s + 1 windows; window i starts at min(i * s + c, n) - c, clamped at 0; every
pixel's logits are the mean over the windows that cover it.
"""
import pytest
import torch

from pna.engine.evaluate import predict_stage_logits


class WindowOrigin(torch.nn.Module):
    """Logits, constant over a window: channel 0 = the window's first row, channel 1 = its first column,
    read from an image whose channel 0 holds each pixel's row and channel 1 its column."""

    stage_names = ["P0"]

    def forward(self, x, return_all=False):
        origin = x[:, :2, :1, :1]
        return {"P0": origin.expand(-1, -1, *x.shape[-2:])}


def coordinates(height: int, width: int) -> torch.Tensor:
    rows = torch.arange(height, dtype=torch.float32)[:, None].expand(height, width)
    cols = torch.arange(width, dtype=torch.float32)[None, :].expand(height, width)
    return torch.stack([rows, cols, torch.zeros(height, width)])[None]


def window_starts(n: int, crop: int, stride: int) -> list[int]:
    count = max(n - crop + stride - 1, 0) // stride + 1
    return [max(min(i * stride + crop, n) - crop, 0) for i in range(count)]


def by_hand(height, width, crop, stride) -> torch.Tensor:
    total, count = torch.zeros(2, height, width, dtype=torch.float64), torch.zeros(height, width, dtype=torch.float64)
    for top in window_starts(height, crop[0], stride[0]):
        for left in window_starts(width, crop[1], stride[1]):
            total[0, top:top + crop[0], left:left + crop[1]] += top
            total[1, top:top + crop[0], left:left + crop[1]] += left
            count[top:top + crop[0], left:left + crop[1]] += 1
    return total / count


@pytest.mark.parametrize("size, crop, stride", [
    ((64, 128), (32, 64), (21, 42)),   # Cityscapes' 1024x2048 image, 512x1024 crop, 341x682 stride, / 16
    ((40, 100), (24, 48), (16, 32)),   # 2 window rows, 3 columns (the last one aligned with the border)
    ((20, 100), (24, 48), (16, 32)),   # shorter than the crop: one row of windows, zero-padded below
])
def test_slide_averages_the_windows_that_cover_each_pixel(size, crop, stride):
    assert window_starts(64, 32, 21) == [0, 21, 32] and window_starts(128, 64, 42) == [0, 42, 64]
    out = predict_stage_logits(WindowOrigin(), coordinates(*size), "slide", crop=crop, stride=stride)["P0"]
    assert out.shape == (1, 2, *size)
    torch.testing.assert_close(out[0].double(), by_hand(*size, crop, stride), rtol=0, atol=1e-5)
