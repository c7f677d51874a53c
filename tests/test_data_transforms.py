"""Joint transforms keep image and label aligned; crops are fixed size; eval resizes the image only."""
import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader
from torchvision import tv_tensors

from pna.data import IMAGENET_MEAN, IMAGENET_STD, build_eval_transform, build_train_transform, denormalize
from pna.data.photometric import PhotometricDistortion, hsv_to_rgb, rgb_to_hsv
from pna.data.transforms import CategoryAreaCrop, RandomShortSideResize

# Class k is drawn in colour COLOURS[k], so a label can be read back from the transformed image.
COLOURS = torch.tensor([(250, 10, 10), (10, 250, 10), (10, 10, 250), (250, 250, 10), (10, 250, 250), (250, 10, 250)])


def blocky_pair(h: int, w: int, block: int = 8, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    cells = torch.randint(0, len(COLOURS), ((h + block - 1) // block, (w + block - 1) // block), generator=g)
    label = cells.repeat_interleave(block, 0).repeat_interleave(block, 1)[:h, :w]
    image = COLOURS[label].permute(2, 0, 1).to(torch.uint8)
    return tv_tensors.Image(image), tv_tensors.Mask(label.to(torch.uint8))


def label_from_image(image: torch.Tensor) -> torch.Tensor:
    rgb = denormalize(image) * 255  # 3xHxW
    dist = ((rgb.permute(1, 2, 0)[:, :, None, :] - COLOURS.float()) ** 2).sum(-1)
    return dist.argmin(-1)


def interior(label: torch.Tensor) -> torch.Tensor:
    """Pixels whose 3x3 neighbourhood has one label (block edges are blended in the image)."""
    padded = torch.nn.functional.pad(label[None, None].float(), (1, 1, 1, 1), mode="replicate")[0, 0]
    windows = padded.unfold(0, 3, 1).unfold(1, 3, 1)
    return (windows == label[..., None, None]).all(-1).all(-1)


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("scale, image_pixels", [
    (0.5, 20 * 28),   # 40 x 56 -> 20 x 28: padded on both sides of the 48 x 48 crop
    (1.0, 40 * 48),   # 40 x 56: rows padded (40 < 48), columns cropped
    (2.0, 48 * 48),   # 80 x 112: no padding
    (1.5, 48 * 48),   # 60 x 84: no padding
])
def test_train_transform_keeps_image_and_label_aligned(seed, scale, image_pixels):
    torch.manual_seed(seed)
    image, label = blocky_pair(40, 56, seed=seed)
    x, y = build_train_transform((48, 48), scale_range=(scale, scale), photometric=False)(image, label)
    assert x.shape == (3, 48, 48) and y.shape == (48, 48) and x.dtype == torch.float32
    y = y.long()
    valid = (y != 255) & interior(y)
    assert valid.sum() > 100
    agreement = (label_from_image(x)[valid] == y[valid]).float().mean()
    assert agreement > 0.99
    padded = y == 255  # padding: label 255 exactly where the image is the mean colour (~0 normalised)
    assert int(padded.sum()) == 48 * 48 - image_pixels
    assert x[:, padded].abs().amax(0).lt(0.01).all() and x[:, padded].numel() == 3 * (48 * 48 - image_pixels)
    assert (x[:, ~padded].abs().amax(0) > 0.5).float().mean() > 0.95


def test_flip_and_scale_actually_vary_between_draws():
    image, label = blocky_pair(40, 56)
    t = build_train_transform((40, 56), photometric=False, scale_range=(0.5, 2.0))
    torch.manual_seed(0)
    outs = [t(image, label)[1] for _ in range(8)]
    assert len({tuple(o.flatten().tolist()) for o in outs}) == 8


def test_scale_is_relative_to_base_size():
    from pna.data.transforms import RandomRescale

    image, label = blocky_pair(50, 100)
    x, y = RandomRescale((1.0, 1.0), base_size=(200, 800))(image, label)  # fits 100x50 into 800x200 -> x4
    assert x.shape[-2:] == (200, 400) and y.shape == (200, 400)
    x, y = RandomRescale((0.5, 0.5))(image, label)
    assert y.shape == (25, 50) and set(y.unique().tolist()) <= set(label.unique().tolist())  # nearest


def test_photometric_changes_image_not_label():
    image, label = blocky_pair(32, 32)
    torch.manual_seed(3)
    x_plain, y_plain = build_train_transform((32, 32), scale_range=(1, 1), flip=False, photometric=False)(image, label)
    changed = 0
    for s in range(6):
        torch.manual_seed(s)
        x, y = build_train_transform((32, 32), scale_range=(1, 1), flip=False, photometric=True)(image, label)
        assert torch.equal(y, y_plain)
        changed += not torch.allclose(x, x_plain)
    assert changed > 0


def test_crops_collate_into_a_batch():
    t = build_train_transform(32)
    items = []
    for h, w in ((20, 30), (64, 48), (33, 33)):
        x, y = t(*blocky_pair(h, w))
        items.append({"image": x, "label": y.long(), "id": f"{h}x{w}"})
    batch = next(iter(DataLoader(items, batch_size=3)))
    assert batch["image"].shape == (3, 3, 32, 32) and batch["label"].shape == (3, 32, 32)


def test_eval_transform_resizes_the_short_side_of_the_image_only():
    image, label = blocky_pair(40, 60)
    x, y = build_eval_transform(32)(image, label)
    assert x.shape == (3, 32, 48) and torch.equal(y, label)
    x, y = build_eval_transform()(image, label)
    assert x.shape == (3, 40, 60)
    mean = torch.tensor(IMAGENET_MEAN).view(3, 1, 1)
    std = torch.tensor(IMAGENET_STD).view(3, 1, 1)
    assert torch.allclose(x, (image.float() / 255 - mean) / std, atol=1e-6)
    assert torch.allclose(denormalize(x[None])[0] * 255, image.float(), atol=1e-4)


def test_bad_transform_arguments():
    with pytest.raises(ValueError, match="crop_size"):
        build_train_transform((0, 32))
    with pytest.raises(ValueError, match="scale_range"):
        build_train_transform(32, scale_range=(2.0, 1.0))
    with pytest.raises(ValueError, match="short_side"):
        build_eval_transform(0)


def test_photometric_distortion_never_swaps_channels():
    # Three channels that differ everywhere keep their order through every draw: channel 0 stays
    # the brightest, channel 2 the darkest (torchvision's RandomPhotometricDistort permutes them).
    base = torch.stack([torch.full((16, 16), v, dtype=torch.uint8) for v in (200, 120, 40)])
    image = tv_tensors.Image(base)
    distort = PhotometricDistortion(hue=0)  # a hue shift may legitimately reorder the channels
    for seed in range(50):
        torch.manual_seed(seed)
        out = distort(image).float()
        assert (out[0] >= out[1]).all() and (out[1] >= out[2]).all(), seed
    changed = sum(not torch.equal(PhotometricDistortion()(image), image) for _ in range(20))
    assert changed > 5


def test_hsv_round_trip_and_hue_shift():
    rgb = torch.rand(3, 8, 8)
    assert torch.allclose(hsv_to_rgb(rgb_to_hsv(rgb)), rgb, atol=1e-5)
    red = torch.tensor([1.0, 0.0, 0.0]).view(3, 1, 1)
    hsv = rgb_to_hsv(red)
    hsv[0] = (hsv[0] + 60 / 180) % 1.0  # 60 OpenCV units = 120 degrees: red -> green
    assert torch.allclose(hsv_to_rgb(hsv).flatten(), torch.tensor([0.0, 1.0, 0.0]), atol=1e-6)


def test_category_area_crop_avoids_single_class_crops():
    # A random 16-wide crop of this image is balanced (no class over 75%) only when its left edge
    # is in 29..35, 7 of 49 offsets; re-drawing up to 10 times makes that ~1 - (42/49)^10 = 78%.
    label = torch.zeros(64, 64, dtype=torch.uint8)
    label[:, 40:] = 1
    image = tv_tensors.Image(torch.zeros(3, 64, 64, dtype=torch.uint8))
    mask = tv_tensors.Mask(label)

    def mixed_fraction(crop):
        hits = 0
        for seed in range(100):
            torch.manual_seed(seed)
            _, y = crop(image, mask)
            share = torch.bincount(y.flatten().long()).max().item() / y.numel()
            hits += share < 0.75
        return hits / 100

    plain, constrained = mixed_fraction(CategoryAreaCrop((16, 16))), mixed_fraction(CategoryAreaCrop((16, 16), 0.75))
    assert plain < 0.3 and constrained > 0.6, (plain, constrained)


def test_crop_smaller_image_is_padded_bottom_right_with_mean_and_ignore():
    image = tv_tensors.Image(torch.full((3, 10, 12), 255, dtype=torch.uint8))
    x, y = CategoryAreaCrop((16, 20))(image, tv_tensors.Mask(torch.zeros(10, 12, dtype=torch.uint8)))
    assert x.shape == (3, 16, 20) and (y[10:] == 255).all() and (y[:, 12:] == 255).all() and (y[:10, :12] == 0).all()
    assert (x[:, :10, :12] == 255).all() and tuple(x[:, 15, 19].tolist()) == (124, 116, 104)


def test_short_side_resize_draws_from_the_list_and_caps_the_long_side():
    image, label = blocky_pair(40, 100)
    sizes = set()
    for seed in range(30):
        torch.manual_seed(seed)
        x, y = RandomShortSideResize((20, 80), max_size=120)(image, label)
        assert x.shape[-2:] == y.shape[-2:]
        sizes.add(tuple(x.shape[-2:]))
    assert sizes == {(20, 50), (48, 120)}  # 80 would make the long side 200 > 120: capped


def test_eval_transform_caps_the_long_side():
    image, label = blocky_pair(20, 100)
    x, _ = build_eval_transform(40, max_size=120)(image, label)
    assert x.shape[-2:] == (24, 120)


def _distort(rgb, **params):
    """One PhotometricDistortion step with chosen parameters (no coin flips) on a 1x1 uint8 image."""
    chosen = {"brightness": None, "contrast_first": True, "contrast": None, "saturation": None, "hue": None} | params
    image = tv_tensors.Image(torch.tensor(rgb, dtype=torch.uint8).view(3, 1, 1))
    return PhotometricDistortion().transform(image, chosen).view(3).tolist()


def test_photometric_steps_by_hand():
    # hue in OpenCV units, 180 = a full turn: +60 turns pure red (0 deg) into pure green (120 deg)
    assert _distort((255, 0, 0), hue=60) == [0, 255, 0]
    assert _distort((255, 0, 0), hue=-60) == [0, 0, 255]
    # brightness is clipped to 0..255 before the contrast that follows it: (250 + 32 -> 255) * 0.5 = 127.5 -> 128
    assert _distort((250, 100, 0), brightness=32, contrast_first=False, contrast=0.5) == [128, 66, 16]
    # the contrast is applied once, first or last: 100 * 1.2 = 120
    assert _distort((100, 50, 200), contrast_first=True, contrast=1.2) == [120, 60, 240]
    assert _distort((100, 50, 200), contrast_first=False, contrast=1.2) == [120, 60, 240]
    # saturation: a grey-free colour at half saturation keeps its value and moves halfway to grey
    assert _distort((200, 100, 100), saturation=0.5) == [200, 150, 150]
