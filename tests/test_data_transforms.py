"""Joint transforms keep image and label aligned; crops are fixed size; eval resizes the image only."""
import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader
from torchvision import tv_tensors

from pna.data import build_eval_transform, build_train_transform, denormalize
from pna.data.photometric import PhotometricDistortion, hsv_to_rgb, rgb_to_hsv
from pna.data.transforms import CategoryAreaCrop, RandomShortSideResize

# The authors' normalisation in both code bases, on 0..255 RGB values: MMSeg's img_norm_cfg
# (mmsegmentation:configs/_base_/datasets/pascal_voc12.py:4-5, to_rgb=True) and the Detectron2 rows'
# PIXEL_MEAN / PIXEL_STD with INPUT.FORMAT RGB (main:configs/deep_globe/pna_fpn_R_52_poly_4k_bs16.yaml:4-5,34),
# not Detectron2's defaults for its Caffe2 weights (BGR mean 103.530, 116.280, 123.675, std 1, 1, 1).
AUTHORS_MEAN_255 = (123.675, 116.28, 103.53)
AUTHORS_STD_255 = (58.395, 57.12, 57.375)

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
    mean = torch.tensor(AUTHORS_MEAN_255).view(3, 1, 1)
    std = torch.tensor(AUTHORS_STD_255).view(3, 1, 1)
    assert torch.allclose(x, (image.float() - mean) / std, atol=1e-5)
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


def test_crop_takes_a_smaller_image_whole_without_padding():
    image = tv_tensors.Image(torch.full((3, 10, 12), 255, dtype=torch.uint8))
    x, y = CategoryAreaCrop((16, 20))(image, tv_tensors.Mask(torch.zeros(10, 12, dtype=torch.uint8)))
    assert x.shape == (3, 10, 12) and y.shape == (10, 12) and (x == 255).all()


@pytest.mark.parametrize("seed", range(12))
def test_padding_is_exactly_zero_after_normalisation_at_the_bottom_right_even_when_flipped(seed):
    # (b)2 of the audit: MMSeg pads AFTER flip, photometric distortion and normalisation, with 0 /
    # 255 at the bottom/right. A 20x30 image in a 32x40 crop: rows 20.. and columns 30.. are padding.
    image = tv_tensors.Image(torch.randint(0, 256, (3, 20, 30), dtype=torch.uint8, generator=torch.Generator().manual_seed(seed)))
    label = tv_tensors.Mask(torch.randint(0, 3, (20, 30), dtype=torch.uint8))
    torch.manual_seed(seed)
    x, y = build_train_transform((32, 40), scale_range=(1, 1), flip=True, photometric=True)(image, label)
    assert x.shape == (3, 32, 40) and y.shape == (32, 40)
    pad = torch.ones(32, 40, dtype=torch.bool)
    pad[:20, :30] = False
    assert (x[:, pad] == 0).all() and (y[pad] == 255).all()           # exactly 0, not ~0
    assert (y[~pad] != 255).all() and (x[:, ~pad].abs().sum(0) > 0).float().mean() > 0.95


def test_flipped_samples_keep_the_padding_at_the_right():
    image, label = blocky_pair(20, 30)
    flipped = 0
    for seed in range(8):
        torch.manual_seed(seed)
        x, y = build_train_transform((24, 40), scale_range=(1, 1), flip=True, photometric=False)(image, label)
        flipped += not torch.equal(y[:20, :30], label.long())
        assert (y[:, 30:] == 255).all() and (x[:, :, 30:] == 0).all() and (y[:20, :30] != 255).all()
    assert flipped > 0


def test_batch_padding_leaves_samples_at_their_size():
    image, label = blocky_pair(20, 30)
    x, y = build_train_transform((32, 40), scale_range=(1, 1), pad="batch", photometric=False)(image, label)
    assert x.shape == (3, 20, 30) and y.shape == (20, 30)
    with pytest.raises(ValueError, match="pad must be one of"):
        build_train_transform(32, pad="mean")


def test_pad_collate_pads_to_the_batch_maximum_rounded_to_the_divisor():
    from pna.data.collate import pad_collate

    items = [{"image": torch.ones(3, 508, 508), "label": torch.ones(508, 508, dtype=torch.long), "id": "a"},
             {"image": torch.ones(3, 300, 508), "label": torch.ones(300, 508, dtype=torch.long), "id": "b"}]
    batch = pad_collate(items, size_divisor=32)
    assert batch["image"].shape == (2, 3, 512, 512) and batch["label"].shape == (2, 512, 512)
    assert (batch["image"][0, :, 508:] == 0).all() and (batch["image"][0, :, :, 508:] == 0).all()
    assert (batch["label"][1, 300:] == 255).all() and (batch["label"][1, :300, :508] == 1).all()
    assert (batch["image"][1, :, :300, :508] == 1).all() and batch["id"] == ["a", "b"]
    same = pad_collate(items[:1], size_divisor=1)
    assert same["image"].shape == (1, 3, 508, 508)


def test_crop_tries_is_the_number_of_draws():
    # Every crop of this image is single-class, so the constraint never passes: count the draws.
    draws = []

    class Counting(CategoryAreaCrop):
        def _draw(self, h, w):
            draws.append(1)
            return super()._draw(h, w)

    image = tv_tensors.Image(torch.zeros(3, 16, 16, dtype=torch.uint8))
    mask = tv_tensors.Mask(torch.zeros(16, 16, dtype=torch.uint8))
    for tries in (10, 11):
        draws.clear()
        Counting((8, 8), 0.75, tries=tries)(image, mask)
        assert len(draws) == tries


def test_hue_range_is_inclusive_and_mmseg_never_draws_plus_18():
    drawn = set()
    for seed in range(400):
        torch.manual_seed(seed)
        hue = PhotometricDistortion(hue=(-18, 17)).make_params([])["hue"]
        if hue is not None:
            drawn.add(hue)
    assert drawn == set(range(-18, 18))


def test_antialias_off_is_plain_bilinear_on_downscaling():
    # MMSeg resizes with cv2 bilinear (no antialiasing): the same as torch's bilinear interpolation
    # without antialias; the antialiased resize (PIL-like, Detectron2) averages a wider footprint.
    from pna.data.transforms import RandomRescale

    image = tv_tensors.Image(torch.randint(0, 256, (3, 64, 64), dtype=torch.uint8, generator=torch.Generator().manual_seed(0)))
    mask = tv_tensors.Mask(torch.zeros(64, 64, dtype=torch.uint8))
    reference = torch.nn.functional.interpolate(image[None].float(), size=(16, 16), mode="bilinear",
                                                align_corners=False, antialias=False)[0]
    plain, _ = RandomRescale((0.25, 0.25), antialias=False)(image, mask)
    smooth, _ = RandomRescale((0.25, 0.25), antialias=True)(image, mask)
    assert (plain.float() - reference).abs().max() <= 1
    assert (smooth.float() - reference).abs().mean() > 10 and smooth.float().std() < plain.float().std() / 2


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


# The crop decision of the authors' two code bases: labels equal to the ignore index are dropped from
# the counts; the window is kept when at least two classes remain and the largest count / the sum of
# the remaining counts < cat_max_ratio; a ratio of 1 switches the check off.
# MMSeg: mmsegmentation:mmseg/datasets/pipelines/transforms.py:687-695 (RandomCrop);
# Detectron2: facebookresearch/detectron2@47d8ed7a1bd9:detectron2/data/transforms/augmentation_impl.py:463-476
# (RandomCrop_CategoryAreaConstraint, given the ignore value 255 by main:train_net.py:37-42).
WINDOWS = {  # pixel count of each label in a 4 x 4 window -> kept at cat_max_ratio 0.75 (worked out by hand)
    # 6 / (6 + 2) = 0.75 is not < 0.75; counting 255 as a class would give 8 / 16, or in the total 6 / 16: kept
    "ignored pixels would dilute the largest class": ({3: 6, 7: 2, 255: 8}, False),
    # 2 / 4 = 0.5; counting 255 as a class would make it the largest, 12 / 16 = 0.75: re-drawn
    "ignored pixels would be the largest class": ({3: 2, 7: 2, 255: 12}, True),
    # one class left; counting 255 as a class would give two at 8 / 16
    "one class and ignored pixels": ({3: 8, 255: 8}, False),
    "only ignored pixels": ({255: 16}, False),
    "three classes and ignored pixels": ({0: 5, 1: 3, 2: 2, 255: 6}, True),  # 5 / 10 = 0.5
    "just under the ratio": ({3: 11, 7: 5}, True),  # 11 / 16 = 0.6875
    "at the ratio": ({3: 12, 7: 4}, False),  # 12 / 16 = 0.75 is not < 0.75
}


def _window(counts: dict[int, int]) -> tv_tensors.Mask:
    values = torch.tensor([label for label, n in counts.items() for _ in range(n)], dtype=torch.uint8)
    return tv_tensors.Mask(values[torch.randperm(16, generator=torch.Generator().manual_seed(0))].view(4, 4))


def _draws(crop: CategoryAreaCrop, mask: tv_tensors.Mask) -> int:
    """How many windows ``crop`` draws on ``mask``: 1 when the first is kept, ``tries`` when every one
    is re-drawn (a crop as large as the mask has one place only, so every draw is the same window)."""
    draws = []

    class Counting(type(crop)):
        def _draw(self, h, w):
            draws.append((h, w))
            return super()._draw(h, w)

    counting = Counting(crop.crop, crop.cat_max_ratio, crop.ignore_index, crop.tries)
    counting(tv_tensors.Image(torch.zeros(3, *mask.shape, dtype=torch.uint8)), mask)
    return len(draws)


@pytest.mark.parametrize("case", list(WINDOWS))
def test_category_area_crop_counts_only_labelled_pixels(case):
    counts, kept = WINDOWS[case]
    assert _draws(CategoryAreaCrop((4, 4), 0.75, tries=5), _window(counts)) == (1 if kept else 5)


def test_category_area_crop_ignores_the_given_index_and_a_ratio_of_one_is_off():
    mask = _window({3: 6, 7: 10})
    assert _draws(CategoryAreaCrop((4, 4), 0.75, tries=5), mask) == 1  # 10 / 16 = 0.625
    assert _draws(CategoryAreaCrop((4, 4), 0.75, ignore_index=7, tries=5), mask) == 5  # class 3 alone
    single = _window({3: 16})
    assert _draws(CategoryAreaCrop((4, 4), 0.99, tries=5), single) == 5  # one class: re-drawn
    assert _draws(CategoryAreaCrop((4, 4), 1.0, tries=5), single) == 1  # 1 disables the check in both code bases
    assert _draws(CategoryAreaCrop((4, 4), None, tries=5), single) == 1
