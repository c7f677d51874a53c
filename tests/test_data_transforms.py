"""Joint transforms keep image and label aligned; crops are fixed size; eval resizes the image only."""
import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader
from torchvision import tv_tensors

from pna.data import IMAGENET_MEAN, IMAGENET_STD, build_eval_transform, build_train_transform, denormalize

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


@pytest.mark.parametrize("seed", range(6))
def test_train_transform_keeps_image_and_label_aligned(seed):
    torch.manual_seed(seed)
    image, label = blocky_pair(40, 56, seed=seed)
    x, y = build_train_transform((48, 48), photometric=False)(image, label)
    assert x.shape == (3, 48, 48) and y.shape == (48, 48) and x.dtype == torch.float32
    y = y.long()
    valid = (y != 255) & interior(y)
    assert valid.sum() > 100
    agreement = (label_from_image(x)[valid] == y[valid]).float().mean()
    assert agreement > 0.99
    padded = y == 255  # padding: label 255 exactly where the image is black (0 before normalisation)
    assert torch.allclose(denormalize(x)[:, padded], torch.zeros(()), atol=1e-6)
    assert not torch.any(denormalize(x)[:, ~padded].sum(0) < 1e-3)


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
