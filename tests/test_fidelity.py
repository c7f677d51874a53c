"""The paper profile reproduces the authors' per-row settings (SPEC "Per-row settings").

SPEC's table is transcribed here a second time, independently of pna/configs/authors.py, so that a
slip in either copy fails a test; then every paper config's resolved settings (read from what it
builds) must equal the authors' except for the documented deviations.
"""
import pytest

from pna.configs import ROWS, load_config
from pna.configs.authors import AUTHORS

# setting: (output stride, window, lr, weight decay, poly power, warmup, clip, iters, crop, hard mining, aux)
SPEC_TABLE = {
    "voc/fcn": (32, 9, 1e-4, 1e-4, 0.9, 200, None, 20000, (512, 512), (), True),
    "voc/deeplabv3": (16, 9, 1e-4, 1e-4, 0.9, 200, None, 20000, (512, 512), (), True),
    "voc/psp": (16, 9, 1e-4, 1e-4, 0.9, 200, None, 20000, (512, 512), (), True),
    "voc/psp_swin_t": (32, 9, 6e-5, 0.01, 1.0, 200, None, 20000, (512, 512), (), True),
    "voc/psp_swin_b": (32, 9, 6e-5, 0.01, 1.0, 200, None, 20000, (512, 512), (), True),
    "cocostuff10k/deeplabv3": (16, 9, 1e-4, 1e-4, 0.9, 400, None, 40000, (512, 512), (), True),
    "cityscapes/deeplabv3": (16, 9, 1e-4, 0.01, 0.9, 0, 0.01, 90000, (512, 1024), ("coarse", "pna"), False),
    "cityscapes/fpn": (32, 7, 1e-4, 0.01, 0.9, 0, 0.01, 90000, (512, 1024), (), False),
    "deepglobe/fpn": (32, 7, 1e-4, 0.01, 0.9, 0, 0.01, 4000, (508, 508), ("pna",), False),
    "trans10k/fpn": (32, 7, 1e-4, 0.01, 0.9, 0, 0.01, 8000, (512, 512), ("pna",), False),
}
FIELDS = ("output_stride", "window", "lr", "weight_decay", "poly_power", "warmup_iters", "clip_grad", "iters",
          "crop", "hard_mining", "aux")


def test_the_authors_table_matches_an_independent_transcription_of_spec():
    assert set(AUTHORS) == set(SPEC_TABLE)
    for key, expected in SPEC_TABLE.items():
        assert tuple(getattr(AUTHORS[key], f) for f in FIELDS) == expected, key
    city = AUTHORS["cityscapes/deeplabv3"]
    assert city.stem == (64, 64, 128) and city.res5_multigrid == (1, 2, 4) and city.head_channels == 256
    assert city.aspp_dilations == (1, 6, 12, 18) and city.test_short == 1024 and city.test_max == 2048
    assert AUTHORS["voc/fcn"].stem == (32, 32, 64) and AUTHORS["voc/fcn"].scale_base == (512, 2048)
    assert AUTHORS["trans10k/fpn"].resize_mode == "bilinear" and len(AUTHORS["trans10k/fpn"].short_sides) == 16
    assert AUTHORS["voc/deeplabv3"].batch_per_gpu * AUTHORS["voc/deeplabv3"].gpus == 16
    assert AUTHORS["deepglobe/fpn"].test_short == 1024


def test_every_row_follows_a_setting_and_every_setting_has_a_shipped_row():
    assert {r.setting for r in ROWS.values()} == set(AUTHORS)
    assert {r.setting for r in ROWS.values() if r.basis == "code"} == set(AUTHORS)
    no_config = {"voc/fcn_swin_t_pna", "voc/fcn_swin_b_pna"}  # FCN + PNA on Swin: no shipped config
    for name, row in ROWS.items():
        assert (row.basis == "code") == (row.model.endswith("_pna") and name not in no_config), name
        assert (row.basis == "paper") == row.model.endswith("_pna_nam"), name


def test_paper_configs_carry_the_authors_training_settings():
    voc = load_config("voc/deeplabv3_r101_os16_pna", "paper")
    assert (voc.optim.weight_decay, voc.optim.warmup_iters, voc.optim.decay_rule, voc.optim.clip_grad) == (
        1e-4, 200, "mm", None)
    assert voc.data.scale_base == (512, 2048) and voc.data.cat_max_ratio == 0.75 and voc.data.eval_max_size == 2048
    city = load_config("cityscapes/deeplabv3_r103_os16_pna", "paper")
    assert (city.optim.clip_grad, city.optim.warmup_iters, city.optim.decay_rule) == (0.01, 0, "d2")
    assert city.model.loss == {"hard_pixel_fraction": 0.2, "hard_pixel_outputs": ["P0", "P1", "P2", "P3", "P4"]}
    assert load_config("cityscapes/fpn_r103_pna", "paper").model.loss == {}
    assert load_config("deepglobe/fpn_r52_pna", "paper").model.loss["hard_pixel_outputs"] == ["P1", "P2", "P3", "P4"]
    glob = load_config("deepglobe/fpn_r52_pna", "paper")
    assert glob.data.options == {"unknown": "class"} and glob.data.eval_options == {"unknown": "ignore"}
    assert (glob.data.eval_short_side, glob.data.short_sides[0], glob.data.max_size) == (1024, 512, 4096)
    assert load_config("trans10k/fpn_r52_pna", "paper").model.overrides == {"resize_mode": "bilinear"}
    assert load_config("voc/psp_swin_b_pna", "paper").optim.warmup_iters == 200


@pytest.mark.slow
def test_every_paper_row_resolves_to_the_authors_settings_or_a_documented_deviation():
    from pna.tools.fidelity import differences

    unexplained = {n: [(d.field, d.ours, d.authors) for d in differences(n) if not d.explained] for n in ROWS}
    assert {n: d for n, d in unexplained.items() if d} == {}


def test_hard_mining_counts_k_over_all_pixels_of_the_batch():
    import torch
    import torch.nn.functional as F

    from pna.models import SegmentationLoss

    labels = torch.zeros(1, 1, 10, dtype=torch.long)
    labels[..., 5:] = 255  # half the pixels ignored
    logits = torch.zeros(1, 2, 1, 10)
    logits[0, 1, 0, :] = torch.arange(10.0)
    loss = SegmentationLoss(hard_pixel_fraction=0.4, hard_pixel_outputs=["P1"])
    _, parts = loss({"P0": logits, "P1": logits}, labels)
    per_pixel = F.cross_entropy(logits, labels, ignore_index=255, reduction="none").flatten()
    # k = 0.4 x 10 pixels = 4 (not 0.4 x 5 valid = 2): the mean of the 4 largest, ignored ones counting 0
    assert parts["P1"].item() == pytest.approx(per_pixel.topk(4).values.mean().item())
    assert parts["P0"].item() == pytest.approx(per_pixel[:5].mean().item())  # P0 not mined here
