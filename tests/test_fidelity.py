"""The paper profile against the audit of the authors' code (docs/authors_audit.csv).

The audit is read back here through its own lines (what the findings document maps), the readers
of its text are tried on hand-written lines, the authors' table (pna/configs/authors.py) must agree
with the audit where the audit states a number, and the measured report (results/fidelity.md) must
be fresh and free of unexplained differences: two of its sections are rebuilt in the fast suite,
the whole file in the slow one.
"""
import dataclasses
import re

import pytest

from pna.configs import ROWS, load_config
from pna.configs.authors import AUTHORS
from pna.tools.audit import AuditLine, audit_lines, group_of, lookup
from pna.tools.fidelity_expect import EXPECT, MEAN_ALL, MEAN_VALID, NotUnderstood, top_k

# The config of each group, as docs/authors_audit_findings.md (a) maps them.
CONFIG_FILES = {
    "mm/voc/fcn_r50": "pna_fcn_r50-d32_512x512_20k_voc.py",
    "mm/voc/deeplabv3_r101": "pna_deeplabv3_r101-d16_512x512_20k_voc.py",
    "mm/voc/psp_r101": "pna_psp_r101-d16_512x512_20k_voc.py",
    "mm/voc/psp_swin_t": "pna_psp_swin_tiny_512x512_20k_voc.py",
    "mm/voc/psp_swin_b": "pna_psp_swin_base_512x512_20k_voc.py",
    "mm/cocostuff10k/deeplabv3_r50": "pna-deeplabv3_r50-d16_512x512_40k_cocostuff10k.py",
    "d2/cityscapes/deeplabv3_r52": "pna_deeplab_v3_R_52_os16_poly_90k_bs16.yaml",
    "d2/cityscapes/deeplabv3_r103": "pna_deeplab_v3_R_103_os16_poly_90k_bs16.yaml",
    "d2/cityscapes/fpn_r52": "pna_fpn_R_52_poly_90k_bs16.yaml",
    "d2/cityscapes/fpn_r103": "pna_fpn_R_103_poly_90k_bs16.yaml",
    "d2/deepglobe/fpn_r52": "pna_fpn_R_52_poly_4k_bs16.yaml",
    "d2/trans10k/fpn_r52": "pna_fpn_R_52_poly_8k_bs16.yaml",
}


def test_every_setting_names_its_audit_groups_and_every_row_finds_its_config():
    lines = audit_lines()
    assert {g for s in AUTHORS.values() for g in s.audit_groups} == set(CONFIG_FILES)
    for group, name in CONFIG_FILES.items():
        assert lines[(group, "config_file")].value.endswith(name), group
    assert group_of("cityscapes/deeplabv3_r103_os16_pna") == "d2/cityscapes/deeplabv3_r103"
    assert group_of("cityscapes/fpn_r52_pna") == "d2/cityscapes/fpn_r52"
    for name in ROWS:  # every row reads a shipped config's lines, and the branch's for head-wide facts
        assert lookup(name, "config_file").value.endswith(CONFIG_FILES[group_of(name)])
        assert lookup(name, "loss_averaging").group in (group_of(name), group_of(name)[:2] + "/*")


def test_row_bases_follow_the_audit():
    # "code": the group has the row's shipped config; "paper": the audit found no config for a result
    # of the paper (NAM-only, Table 2 windows, FCN + PNA on Swin); "inferred": quoted baselines.
    paper = {n for n, r in ROWS.items() if r.basis == "paper"}
    assert paper == {"voc/fcn_r50_os32_pna_nam", "voc/psp_swin_t_pna_nam", "voc/fcn_swin_t_pna", "voc/fcn_swin_b_pna",
                     *(f"voc/fcn_r50_os32_pna_nam_w{w}" for w in (5, 7, 9, 11))}
    code = {n for n, r in ROWS.items() if r.basis == "code"}
    assert {r.setting for n, r in ROWS.items() if n in code} == set(AUTHORS)
    assert all(n.endswith("_pna") for n in code)
    for name in ("voc/fcn_r50_os32_pna_nam", "deepglobe/fpn_r52_pna"):
        assert "paper" in ROWS[name].note  # NAM-only and the DeepGlobe scoring rest on the paper's text
    assert AUTHORS["voc/fcn"].source_of("gpus").startswith("paper") and AUTHORS["voc/deeplabv3"].source_of("gpus") == ""
    assert (AUTHORS["voc/deeplabv3"].batch_per_gpu, AUTHORS["voc/deeplabv3"].gpus) == (8, 2)  # train.sh
    assert "paper" in AUTHORS["deepglobe/fpn"].source_of("num_outputs_note")


def line(setting: str, value: str) -> dict:
    return {setting: AuditLine("g", setting, value, "src", "")}


@pytest.mark.parametrize("check, lines, expected", [
    ("crop_size", line("crop_size", "508x508 absolute (min(crop, image) per side)"), (508, 508)),
    ("dilations", line("dilations", "(1, 1, 1, 2); contract_dilation: first res5 block dilation 1, others 2"), (1, 2, 2)),
    ("dilations", line("dilations", "res5 RES5_DILATION 2 x multi-grid -> (2, 4, 8); res4 1"), (2, 4, 8)),
    ("stem_widths", line("stem_widths", "DeepLab stem: 3x3 convs 64 (stride 2), 64, 128, then pool"), (64, 64, 128)),
    ("cat_max_ratio", line("cat_max_ratio", "0.75; up to 10 checks, re-drawn (11th draw unchecked)"), (0.75, 11)),
    ("cat_max_ratio", line("cat_max_ratio", "0.75; up to 10 draws, stops at the first passing one"), (0.75, 10)),
    ("warmup", line("warmup", "linear, 400 iters, warmup_ratio 1e-6 (multiplies the poly lr)"), (400, 1e-6)),
    ("warmup", line("warmup", "none (WARMUP_ITERS 0)"), (0, None)),
    ("size_divisibility", line("size_divisibility", "0 (ResNet backbone default)"), 1),
    ("size_divisibility", line("size_divisibility", "32 (FPN_PNA backbone)"), 32),
    ("aspp_dilations", line("aspp_dilations", "1x1 branch + 3x3 dilations (6, 12, 18) + image pooling"), (1, 6, 12, 18)),
    ("lr_schedule", line("lr_schedule", "WarmupPolyLR: lr = base x (1 - iter/max_iter)^0.9, per iteration"), 0.9),
    ("grad_clip", line("grad_clip", "full-model L2 norm clipping to 0.01 over all parameters"), 0.01),
    ("init_pna_head", line("init_pna_head", "PyTorch defaults (...)"), ("torch default",) * 3),
])
def test_audit_readers_on_hand_written_lines(check, lines, expected):
    assert EXPECT[check](lines) == expected


def test_loss_reader_per_code_base():
    mm = {**line("loss_averaging", "reduction mean: sum of per-pixel CE / ALL B*H*W pixels"),
          **line("loss_type_per_output", "plain cross-entropy"), **line("aux_head", "FCNHead on res4")}
    assert dict(EXPECT["loss"](mm)) == {name: MEAN_ALL for name in ("P0", "P1", "P2", "P3", "P4", "aux")}
    d2 = {**line("loss_averaging", "coarse: CE mean over non-ignored pixels"),
          **line("loss_type_per_output", "coarse: plain CE (ignores LOSS_TYPE); each PNA stage: hard_pixel_mining"),
          **line("hard_pixel_mining", "k = int(0.2 x ALL pixels of the per-GPU padded batch)"),
          **line("batch_per_gpu", "4 (IMS_PER_BATCH 16 over 4 GPUs)"), **line("aux_head", "none")}
    assert dict(EXPECT["loss"](d2)) == {"P0": MEAN_VALID, **{f"P{m}": top_k(0.2, 4) for m in range(1, 5)}}


def test_deepglobe_and_swin_readers():
    deepglobe = {**line("eval_metric_classes", "label ids 0..5 scored ... MagNet's encoding: our ids (6, 0, 1, 2, 3, 4); "
                                               "unknown last: our ids (0, 1, 2, 3, 4, 5)"),
                 **line("paper_metric", "no pixel dropped (unknown ground truth kept: ...), IoU averaged over ids 1..6, "
                                        "the land classes")}
    assert EXPECT["eval_metric_classes"](deepglobe, 7) == ((0, 1, 2, 3, 4, 5), (6, 0, 1, 2, 3, 4), "unknown kept")
    with pytest.raises(NotUnderstood):  # a headline metric that no longer says what it does with unknown
        EXPECT["eval_metric_classes"]({**deepglobe, **line("paper_metric", "IoU averaged over 6 classes")}, 7)
    assert EXPECT["eval_metric_classes"](line("eval_metric_classes", "21 classes incl. background"), 21)[1:] == (None, None)
    assert EXPECT["swin_shifted_windows"](line("swin_shifted_windows", "pad, then roll: ShiftWindowMSA ...")) == "pad, then roll"
    assert EXPECT["swin_shifted_windows"]({}) is None


def test_shifted_window_order_is_measured_on_the_built_backbone(monkeypatch):
    import warnings

    from pna.models.backbones import swin
    from pna.tools.fidelity_model import shifted_window_order

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert shifted_window_order(swin.SwinBackbone("swin_t")) == "pad, then roll"
        # timm's own block order (roll, then pad) is what the class swap replaces
        monkeypatch.setattr(swin.PadThenShiftBlock, "_attn", swin.SwinTransformerBlock._attn)
        assert shifted_window_order(swin.SwinBackbone("swin_t")).startswith("roll, then pad (row 0 reaches rows [0, 10")


def test_a_line_the_reader_does_not_know_is_refused():
    with pytest.raises(NotUnderstood):
        EXPECT["init_heads"](line("init_heads", "ASPP convs xavier"))  # no predictor init named
    with pytest.raises(NotUnderstood):
        EXPECT["paramwise_rules"](line("paramwise_rules", "weight decay 0 for norms"))


@pytest.mark.parametrize("key", list(AUTHORS))
def test_the_authors_table_agrees_with_the_audit(key):
    # pna/configs/authors.py (what the paper profile is built from) read back against the audit
    s = AUTHORS[key]
    name = next(n for n, r in ROWS.items() if r.setting == key and r.basis == "code")

    def audit(check: str, *settings: str):
        return EXPECT[check]({st: lookup(name, st) for st in settings or (check,)})

    assert (s.lr, s.weight_decay, s.poly_power, s.clip_grad) == (
        audit("lr"), audit("weight_decay"), audit("lr_schedule"), audit("grad_clip"))
    assert (s.iters, s.crop, s.window, s.output_stride, s.head_channels, s.stem) == (
        audit("max_iters"), audit("crop_size"), audit("pna_window"), audit("output_stride"),
        audit("head_channels"), audit("stem_widths"))
    assert s.batch_per_gpu * s.gpus == audit("batch", "batch_per_gpu", "num_gpus")
    assert (s.warmup_iters, s.cat_max_ratio, s.crop_tries) == (audit("warmup")[0], *audit("cat_max_ratio"))
    assert s.hue == audit("photometric_distortion")[3] and s.test_short == audit("test_resize")[0]
    assert s.antialias == (audit("interpolation") == "bilinear, antialiased")
    kinds = dict(audit("loss", "loss_averaging", "loss_type_per_output", "hard_pixel_mining", "batch_per_gpu",
                       "aux_head"))
    assert s.loss_mean == ("all" if kinds["P1"] == MEAN_ALL else "valid")
    assert set(s.hard_mining) == {h for h, out in (("coarse", "P0"), ("pna", "P1")) if kinds[out].startswith("top")}
    assert s.pad == ("crop" if audit("pad")[-1].startswith("to the crop") else "batch")
    assert s.coarse_twice == (audit("coarse_head_runs_in_training") == 2)


def test_every_audit_setting_is_measured_or_has_a_reason():
    from pna.tools.fidelity import CHECKS
    from pna.tools.fidelity_report import NOT_MEASURED

    settings = {setting for _, setting in audit_lines()}
    covered = {s for c in CHECKS for s in c.settings}
    assert settings <= covered | set(NOT_MEASURED)
    assert not covered & set(NOT_MEASURED)


def test_docs_authors_settings_is_fresh():
    from pna.tools.audit import SETTINGS_MD, settings_markdown

    assert SETTINGS_MD.read_text() == settings_markdown(), "run `python -m pna fidelity`"


# ---- measured: the model builds make these the slower tests of the file ---------------------------

@pytest.mark.parametrize("key", ["trans10k/fpn", "cocostuff10k/deeplabv3"])
def test_committed_report_sections_are_fresh_and_explained(key):
    from pna.paths import REPO_ROOT
    from pna.tools.fidelity import results
    from pna.tools.fidelity_report import setting_section

    per_row = {n: results(n) for n, r in ROWS.items() if r.setting == key}
    assert [(n, r.check.name) for n, rs in per_row.items() for r in rs if not r.explained] == []
    section = "\n".join(setting_section(key, per_row))
    assert section in (REPO_ROOT / "results" / "fidelity.md").read_text(), "run `python -m pna fidelity`"


def test_a_changed_pipeline_is_an_unexplained_difference(monkeypatch):
    # Break the paper profile on purpose: MMSeg's loss averaged over labelled pixels, padding per batch.
    from pna.configs import authors
    from pna.tools.fidelity import differences

    broken = dataclasses.replace(AUTHORS["cocostuff10k/deeplabv3"], loss_mean="valid", pad="batch")
    monkeypatch.setitem(authors.AUTHORS, "cocostuff10k/deeplabv3", broken)
    assert load_config("cocostuff10k/deeplabv3_r50_os16_pna", "paper").model.loss == {"mean_over": "valid"}
    found = {r.check.name: r for r in differences("cocostuff10k/deeplabv3_r50_os16_pna")}
    assert set(found) == {"loss", "pad"} and not any(r.explained for r in found.values())
    assert re.search("labelled", str(found["loss"].ours)) and "batch" in found["pad"].ours[-1]


@pytest.mark.slow
def test_the_committed_report_is_fresh_and_every_difference_explained():
    from pna.cli import dispatch

    assert dispatch(["fidelity", "--check"]) == 0
