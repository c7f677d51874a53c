"""Our paper profile matches the authors' code where the audit (docs/authors_audit_findings.md,
section (b)) found a difference that changes training. Expected values are hand-computed or come
from the formulas the audit cites, never from the code under test."""
import math

import pytest
import torch

from pna.models import SegmentationLoss

LN3 = math.log(3.0)  # the cross-entropy of all-zero logits over 3 classes


# (b)1: mm divides the summed CE by ALL pixels; d2 averages over the labelled ones.
def test_mm_loss_divides_by_all_pixels_and_d2_by_the_labelled_ones():
    labels = torch.zeros(2, 4, 4, dtype=torch.long)
    labels[0, :, 1:] = 255          # image 0: 12 of 16 pixels ignored
    labels[1, 3, :] = 255           # image 1: 4 of 16 ignored -> 16 labelled of 32
    logits = {"P0": torch.zeros(2, 3, 4, 4), "P1": torch.zeros(2, 3, 2, 2), "aux": torch.zeros(2, 3, 1, 1)}
    _, mm = SegmentationLoss(mean_over="all")(logits, labels)
    _, d2 = SegmentationLoss(mean_over="valid")(logits, labels)
    for name in logits:             # every output: 16 x ln3 / 32 pixels (mm), 16 x ln3 / 16 (d2)
        assert mm[name].item() == pytest.approx(LN3 * 16 / 32)
        assert d2[name].item() == pytest.approx(LN3)


def test_mm_loss_of_a_padded_crop_scales_with_the_labelled_fraction():
    # a 341x256 image in a 512x512 crop (the audit's example): a third of the crop is labelled
    labels = torch.full((1, 512, 512), 255, dtype=torch.long)
    labels[0, :256, :341] = 1
    logits = torch.zeros(1, 3, 512, 512)
    logits[:, 1] = 2.0
    per_pixel = -math.log(math.exp(2) / (math.exp(2) + 2))
    loss = SegmentationLoss(mean_over="all").dense_ce(logits, labels)
    assert loss.item() == pytest.approx(per_pixel * 256 * 341 / 512 ** 2, rel=1e-5)


# (b)4: the top 20 % of each 4-image chunk, as 4 GPUs of 4 images mine, then the chunks averaged.
def test_hard_pixel_mining_per_chunk_of_four_images():
    # 8 one-row images of 10 pixels; image i has per-pixel losses that are large only in chunk 0
    labels = torch.zeros(8, 1, 10, dtype=torch.long)
    logits = torch.zeros(8, 2, 1, 10)
    strength = torch.tensor([4.0, 3.0, 2.0, 1.0, 0.5, 0.4, 0.3, 0.2]).view(8, 1)
    logits[:, 1, 0, :] = strength * torch.arange(10.0)      # wrong class: loss grows along the row
    labels[5, 0, 5:] = 255                                  # ignored pixels: loss 0, still counted
    per_pixel = torch.nn.functional.cross_entropy(logits, labels, ignore_index=255, reduction="none")
    flat = [per_pixel[i, 0].tolist() for i in range(8)]
    k = int(0.2 * 40)                                       # 8 of the 40 pixels of each chunk
    chunk_losses = [sum(sorted(sum(flat[c:c + 4], []), reverse=True)[:k]) / k for c in (0, 4)]
    loss = SegmentationLoss(hard_pixel_fraction=0.2, hard_pixel_chunk=4)
    assert loss.dense_ce(logits, labels, hard=True).item() == pytest.approx(sum(chunk_losses) / 2, rel=1e-6)
    whole = sorted(sum(flat, []), reverse=True)[:16]        # one top-k over 80 pixels differs
    assert SegmentationLoss(hard_pixel_fraction=0.2).dense_ce(logits, labels, hard=True).item() == pytest.approx(
        sum(whole) / 16, rel=1e-6)
    assert sum(whole) / 16 != pytest.approx(sum(chunk_losses) / 2, rel=1e-3)


def test_bad_loss_arguments_are_refused():
    with pytest.raises(ValueError, match="mean_over"):
        SegmentationLoss(mean_over="labelled")
    with pytest.raises(ValueError, match="hard_pixel_chunk"):
        SegmentationLoss(hard_pixel_chunk=0)
