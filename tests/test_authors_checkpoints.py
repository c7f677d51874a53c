"""The authors' released checkpoints (MMSeg and Detectron2 formats) load into our rows: every tensor
lands where the facts put it, nothing is dropped or invented, bad files fail naming keys and shapes.

The files are generated from the key/shape facts (``authors_fixtures``); the two models the facts
describe are built at full size (a few seconds each, marked slow)."""
import pickle
import warnings

import pytest
import torch

import authors_fixtures as fx
from pna.authors import (AuthorsCheckpointError, authors_branch, convert_for_model, load_authors_model,
                         name_table)
from pna.authors.mmseg import unfold_to_timm
from pna.models import create_model, get_spec

MM_CONFIG, D2_CONFIG = "voc/fcn_r50_os32_pna", "cityscapes/fpn_r52_pna"


def build(name, classes, **overrides):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return create_model(name, classes, **overrides)


def assert_landed(model, rows, state, skip=()):
    """Every generated tensor equals the model tensor the facts name; every model tensor is one of them."""
    ours = model.state_dict()
    expected = {o for _, _, o in rows if o}
    assert expected == set(ours), (sorted(set(ours) - expected)[:5], sorted(expected - set(ours))[:5])
    for theirs, _, our_key in rows:
        if our_key and our_key not in skip:
            assert torch.equal(ours[our_key], state[theirs].to(ours[our_key].dtype)), (theirs, our_key)


def param_count(model):
    return sum(p.numel() for p in model.parameters())


def assert_runs(model, classes, size=(64, 64)):
    with torch.no_grad():
        out = model.eval()(torch.randn(1, 3, *size))
    assert out.shape == (1, classes, *size) and torch.isfinite(out).all()


# ---- the two models of the facts, in their containers ------------------------------------------
def test_generated_files_have_the_counts_of_the_facts():
    assert fx.counts(fx.mmseg_fcn_pna_r50_voc()) == (502, 65_880_192)
    assert fx.counts(fx.detectron2_fpn_pna_r52_cityscapes()) == (505, 44_969_321)


@pytest.mark.slow
def test_mmseg_fcn_pna_r50_voc_file(tmp_path):
    rows = fx.mmseg_fcn_pna_r50_voc()
    state = fx.fill(rows)
    path = tmp_path / "fcn_r50_pna_voc.pth"
    torch.save({"meta": {"mmseg_version": "0.27.0", "CLASSES": ("background", "aeroplane"), "iter": 20000},
                "state_dict": state, "optimizer": {"state": {}, "param_groups": [{"lr": 1e-4, "params": [0, 1]}]}},
               path)
    model, report = load_authors_model(path, MM_CONFIG)
    assert len(model.state_dict()) == 502 and param_count(model) == 65_880_192
    assert_landed(model, rows, state)
    assert len(report.mapping) == 502 and not (report.unused or report.absent or report.zero_filled or report.reordered)
    assert report.mapping["refine.stages.0.nam.qk.weight"] == "decode_head.1.stages.pna3.blocks.0.attn.qk.weight"
    assert_runs(model, 21)


@pytest.fixture(scope="module")
def d2_rows():
    return fx.detectron2_fpn_pna_r52_cityscapes()


@pytest.fixture(scope="module")
def d2_state(d2_rows):
    return fx.fill(d2_rows, seed=1)


@pytest.mark.slow
def test_detectron2_fpn_pna_r52_cityscapes_file(tmp_path, d2_rows, d2_state):
    path = tmp_path / "model_final.pth"
    torch.save({"model": d2_state, "iteration": 89999, "scheduler": {"last_epoch": 89999}}, path)
    model, report = load_authors_model(path, D2_CONFIG)
    assert len(model.state_dict()) == 505 and param_count(model) == 44_969_321
    assert_landed(model, d2_rows, d2_state)
    assert len(report.mapping) == 505 and not (report.unused or report.absent or report.zero_filled)
    assert report.mapping["refine.stages.3.classifier.weight"] == "sem_seg_head.pna_head.conv_seg_layers.res2.weight"
    assert_runs(model, 19)


@pytest.mark.slow
def test_older_natten_head_name_in_a_numpy_pickle(tmp_path, d2_rows, d2_state):
    """Some files name the PNA head natten_head; Detectron2 .pkl files hold numpy arrays."""
    state = {k.replace(".pna_head.", ".natten_head."): v.numpy() for k, v in d2_state.items()}
    path = tmp_path / "model_final.pkl"
    path.write_bytes(pickle.dumps({"model": state, "__author__": "them"}))
    model, report = load_authors_model(path, D2_CONFIG)
    assert_landed(model, d2_rows, d2_state)
    assert any("natten_head" in note for note in report.notes)


# ---- files that do not fit: the error names the key (and both shapes) ---------------------------
@pytest.fixture(scope="module")
def d2_model():
    return build("fpn_r52_pna", 19)


def convert_d2(state, model):
    return convert_for_model(state, model, get_spec("fpn_r52_pna"), "d2")


def test_renamed_key_is_named(d2_model, d2_state):
    state = dict(d2_state)
    state["sem_seg_head.pna_head.stages.res4.blocks.0.attn.q_k.weight"] = state.pop(
        "sem_seg_head.pna_head.stages.res4.blocks.0.attn.qk.weight")
    with pytest.raises(AuthorsCheckpointError) as error:
        convert_d2(state, d2_model)
    assert "sem_seg_head.pna_head.stages.res4.blocks.0.attn.q_k.weight (refinement)" in str(error.value)
    assert "refine.stages.1.nam.qk.weight" in str(error.value)  # the tensor it leaves unfilled


def test_missing_key_is_named(d2_model, d2_state):
    state = {k: v for k, v in d2_state.items() if k != "backbone.bottom_up.res4.5.conv2.norm.running_var"}
    with pytest.raises(AuthorsCheckpointError, match=r"1 model tensors not in the file: backbone\.body\.layer3\.5\.bn2\.running_var"):
        convert_d2(state, d2_model)


def test_wrong_shape_names_both_shapes(d2_model, d2_state):
    state = dict(d2_state)
    state["sem_seg_head.pna_head.stages.res5.blocks.0.attn.rpb"] = torch.zeros(24, 17, 17)  # window 9, row has 7
    with pytest.raises(AuthorsCheckpointError, match=r"stages\.res5\.blocks\.0\.attn\.rpb \(24, 17, 17\) -> "
                                                     r"refine\.stages\.0\.nam\.rpb \(24, 13, 13\)"):
        convert_d2(state, d2_model)


def test_unknown_key_inside_a_part_is_an_error_outside_is_reported(d2_model, d2_state):
    with pytest.raises(AuthorsCheckpointError, match=r"sem_seg_head\.coarse_sem_seg_head\.p6\.0\.weight \(coarse head\)"):
        convert_d2({**d2_state, "sem_seg_head.coarse_sem_seg_head.p6.0.weight": torch.zeros(1)}, d2_model)
    _, report = convert_d2({**d2_state, "pixel_mean": torch.zeros(3)}, d2_model)
    assert report.unused == {"pixel_mean": "outside the model (no section covers it)"}


def test_bn_counters_may_be_absent_and_are_reported(d2_model, d2_state):
    state = {k: v for k, v in d2_state.items() if not k.endswith("num_batches_tracked")}
    _, report = convert_d2(state, d2_model)
    assert len(report.absent) == 55 and all(k.endswith("num_batches_tracked") for k in report.absent)
    assert "not in the file, kept as initialised (55)" in report.summary()


def test_file_of_the_other_branch_is_refused(d2_model):
    with pytest.raises(AuthorsCheckpointError, match="looks like a MMSegmentation checkpoint.*Detectron2 branch"):
        convert_d2({"decode_head.1.conv_seg_layers.pna0.weight": torch.zeros(1)}, d2_model)


def test_zero_biases_only_where_their_embeddings_have_none(d2_state):
    """A row built with embedding biases gets zeros for them from a Detectron2 file, reported by name."""
    model = build("fpn_r52_pna", 19, embed_bias=True)
    converted, report = convert_for_model(d2_state, model, get_spec("fpn_r52_pna", embed_bias=True), "d2")
    assert sorted(report.zero_filled) == sorted(f"refine.stages.{m}.{e}.bias" for m in range(4) for e in ("query", "value"))
    assert all(not converted[k].any() for k in report.zero_filled)
    _, sections_mm = name_table(get_spec("fcn_r50_os32_pna"), "mm")
    assert sections_mm == {}  # the MMSeg branch never fills anything


def test_rows_without_an_authors_model_are_refused():
    with pytest.raises(AuthorsCheckpointError, match="refinement 'pointrend'"):
        name_table(get_spec("deeplabv3_r101_os16_pointrend"), "mm")
    with pytest.raises(AuthorsCheckpointError, match="head 'deeplabv3plus'"):
        name_table(get_spec("deeplabv3plus_r50_os8"), "mm")
    assert authors_branch("trans10k/fpn_r52_pna") == "d2" and authors_branch("cocostuff10k/deeplabv3_r50_os16_pna") == "mm"


# ---- the other heads and backbones the authors' rows use ----------------------------------------
@pytest.mark.slow
@pytest.mark.parametrize("config, classes, head, depths", [
    ("cocostuff10k/deeplabv3_r50_os16_pna", 171, fx.mm_aspp, (3, 4, 6, 3)),
    ("voc/psp_r101_os16_pna", 21, fx.mm_psp, (3, 4, 23, 3)),
])
def test_mmseg_aspp_and_psp_rows(config, classes, head, depths):
    rows = fx.resnet_v1c(depths) + fx.prefixed(head(classes), "decode_head.0.", "head.") + fx.mm_pna(classes)
    rows += fx.mm_aux(classes)
    state = fx.fill(rows)
    model, report = load_authors_model({"meta": {}, "state_dict": state, "optimizer": {}}, config)
    assert_landed(model, rows, state)
    assert len(report.mapping) == len(rows) and not report.unused
    assert_runs(model, classes)


def mmseg_patch_merging(x, norm_weight, norm_bias, reduction):
    """mmseg's merging: nn.Unfold(2, stride 2) on NCHW, LayerNorm, Linear (channels-last in and out)."""
    b, h, w, c = x.shape
    cols = torch.nn.functional.unfold(x.permute(0, 3, 1, 2), kernel_size=2, stride=2).transpose(1, 2)
    cols = torch.nn.functional.layer_norm(cols, (4 * c,), norm_weight, norm_bias)
    return (cols @ reduction.T).reshape(b, h // 2, w // 2, -1)


@pytest.mark.slow
def test_mmseg_swin_psp_row():
    swin_out = (96, 192, 384, 768)
    rows = fx.swin_mmseg() + fx.prefixed(fx.mm_psp(21, c_in=768), "decode_head.0.", "head.")
    rows += fx.mm_pna(21, in_channels=swin_out) + fx.mm_aux(21, c_in=384)
    state = fx.fill(rows)
    model, report = load_authors_model({"meta": {}, "state_dict": state}, "voc/psp_swin_t_pna")
    merging = {o for _, _, o in rows if ".downsample." in o}
    assert_landed(model, rows, state, skip=merging)
    assert set(report.reordered) == merging and len(merging) == 9
    assert sorted(report.unused) == sorted(t for t, _, o in rows if not o)  # 12 relative_position_index buffers
    # the reordered merging computes what mmseg's Unfold-based merging computes with their tensors
    body = model.backbone.body
    for stage in range(3):
        theirs = {leaf: state[f"backbone.stages.{stage}.downsample.{leaf}"] for leaf in ("norm.weight", "norm.bias", "reduction.weight")}
        x = torch.randn(2, 8, 6, swin_out[stage])
        with torch.no_grad():
            ours = body.layers[stage + 1].downsample(x)
        expected = mmseg_patch_merging(x, theirs["norm.weight"], theirs["norm.bias"], theirs["reduction.weight"])
        assert torch.allclose(ours, expected, atol=1e-5)
    assert_runs(model, 21)


def detectron2_aspp(x, state, prefix="sem_seg_head.coarse_sem_seg_head.aspp."):
    """Detectron2's ASPP from their tensors: [1x1, d6, d12, d18, image pooling] concatenated, projected."""
    def norm_relu(y, name):
        s = {leaf: state[f"{prefix}{name}.norm.{leaf}"] for leaf in ("running_mean", "running_var", "weight", "bias")}
        return torch.relu(torch.nn.functional.batch_norm(y, s["running_mean"], s["running_var"], s["weight"], s["bias"]))
    outs = [norm_relu(torch.nn.functional.conv2d(x, state[f"{prefix}convs.0.weight"]), "convs.0")]
    for i, d in ((1, 6), (2, 12), (3, 18)):
        y = torch.nn.functional.conv2d(x, state[f"{prefix}convs.{i}.weight"], padding=d, dilation=d)
        outs.append(norm_relu(y, f"convs.{i}"))
    pooled = torch.relu(torch.nn.functional.conv2d(x.mean((2, 3), keepdim=True), state[f"{prefix}convs.4.1.weight"],
                                                   state[f"{prefix}convs.4.1.bias"]))
    outs.append(pooled.expand(-1, -1, *x.shape[-2:]))
    return norm_relu(torch.nn.functional.conv2d(torch.cat(outs, 1), state[f"{prefix}project.weight"]), "project")


@pytest.mark.slow
def test_detectron2_deeplabv3_row_reorders_the_aspp_fusion():
    rows = fx.resnet_d2(prefix="backbone.") + fx.d2_aspp(19) + fx.d2_pna(19, window=9)
    state = fx.fill(rows)
    model, report = load_authors_model({"model": state}, "cityscapes/deeplabv3_r52_os16_pna")
    assert_landed(model, rows, state, skip={"head.aspp.bottleneck.0.weight"})
    assert list(report.reordered) == ["head.aspp.bottleneck.0.weight"]
    x = torch.randn(1, 2048, 5, 6)
    with torch.no_grad():
        assert torch.allclose(model.head.aspp(x), detectron2_aspp(x, state), atol=1e-5)
    assert_runs(model, 19)


def test_unfold_reorder_is_a_permutation():
    t = torch.arange(2 * 4 * 3.).reshape(2, 12)  # C = 3
    out = unfold_to_timm(t)
    for col in range(2):
        for row in range(2):
            for c in range(3):
                assert torch.equal(out[:, (2 * col + row) * 3 + c], t[:, c * 4 + 2 * row + col])


# ---- evaluation: the CLI and the notebook function ----------------------------------------------
@pytest.mark.slow
def test_cli_and_function_evaluate_an_authors_file(samples_dir, tmp_path):
    """``pna evaluate --authors-checkpoint FILE --config NAME --root ...`` on a real VOC image."""
    import json

    from pna.cli import dispatch
    from pna.configs import load_config
    from pna.engine.evaluate import evaluate_authors_checkpoint

    src = samples_dir / "voc2012" / "VOCdevkit" / "VOC2012"
    root = tmp_path / "VOC2012"
    for sub, ext in (("JPEGImages", "jpg"), ("SegmentationClass", "png")):
        (root / sub).mkdir(parents=True)
        (root / sub / f"2007_000063.{ext}").symlink_to(src / sub / f"2007_000063.{ext}")
    (root / "ImageSets" / "Segmentation").mkdir(parents=True)
    (root / "ImageSets" / "Segmentation" / "val.txt").write_text("2007_000063\n")
    path, out = tmp_path / "fcn_r50_pna_voc.pth", tmp_path / "metrics.json"
    torch.save({"meta": {}, "state_dict": fx.fill(fx.mmseg_fcn_pna_r50_voc())}, path)
    small = "data.eval_short_side=128"  # keeps the CPU run short; the paper's is 512
    assert dispatch(["evaluate", "--authors-checkpoint", str(path), "--config", MM_CONFIG, "--root", str(root), "--device", "cpu",
                 "--set", small, "--output", str(out)]) == 0
    written = json.loads(out.read_text())
    assert written["checkpoint"] == str(path) and written["num_images"] == 1
    assert list(written["stages"]) == ["P0", "P1", "P2", "P3", "P4"] and 0 <= written["mIoU"] <= 1
    metrics = evaluate_authors_checkpoint(load_config(MM_CONFIG, "paper", [small, f"data.root={str(root)!r}"]), path)
    assert metrics["mIoU"] == pytest.approx(written["mIoU"]) and metrics["authors_checkpoint"]["branch"] == "mm"
    with pytest.raises(ValueError, match="--config"):
        dispatch(["evaluate", "--authors-checkpoint", str(path), "--root", str(root)])  # no --config


@pytest.mark.slow
def test_a_notebook_row_can_be_evaluated_from_the_authors_file(tmp_path):
    """run_rows(authors_checkpoints=...) (the notebooks' parameter) scores the file instead of training."""
    import json

    from pna.data.fixtures import write_fixture
    from pna.analysis.experiments import run_rows, stage_table

    root = write_fixture("voc", tmp_path / "data", num_train=1, num_eval=1, size=(48, 64))
    path = tmp_path / "fcn_r50_pna_voc.pth"
    torch.save({"meta": {}, "state_dict": fx.fill(fx.mmseg_fcn_pna_r50_voc())}, path)
    runs = run_rows("table1", [], profile="paper", data_root=str(root), device="cpu", out_dir=str(tmp_path / "out"),
                    authors_checkpoints=str({"fcn_r50_os32_pna": str(path)}))  # the text papermill hands over
    assert list(runs) == ["fcn_r50_os32_pna"] and runs["fcn_r50_os32_pna"].run_dir is None
    written = json.loads((tmp_path / "out" / "table1" / "fcn_r50_os32_pna.authors.json").read_text())
    assert written["source"] == str(path) and written["config"]["profile"] == "authors"
    assert written["metrics"]["authors_checkpoint"]["branch"] == "mm" and written["metrics"]["num_images"] == 1
    table = stage_table(runs)
    assert list(table.columns) == ["P0", "P1", "P2", "P3", "P4", "final", "trained as"]
    assert table.loc["fcn_r50_os32_pna", "trained as"] == "the authors' released model"
    with pytest.raises(ValueError, match="table1 has no row"):
        run_rows("table1", [], profile="paper", data_root=str(root), authors_checkpoints={"fpn_r52_pna": str(path)})


# ---- DeepGlobe: their label ids (MagNet's: 0 unknown, 1 urban, ..., 6 barren) into ours ---------------
@pytest.mark.slow
def test_deepglobe_file_relabelled_from_magnets_ids_to_ours():
    state = fx.fill(fx.resnet_d2() + fx.d2_fpn(7) + fx.d2_pna(7))
    as_is, _ = load_authors_model({"model": state}, "deepglobe/fpn_r52_pna", class_order="ours")
    model, report = load_authors_model({"model": state}, "deepglobe/fpn_r52_pna")  # default: MagNet's ids
    # MagNet's class of each of their channels (VinAIResearch/MagNet@7f5b876:magnet/dataset/deepglobe.py:10-17),
    # and ours (urban..barren 0..5, unknown 6): our class j must be their channel of the same name
    magnet = ["unknown", "urban", "agriculture", "rangeland", "forest", "water", "barren"]
    ours = ["urban", "agriculture", "rangeland", "forest", "water", "barren", "unknown"]
    theirs_of_ours = [magnet.index(name) for name in ours]
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        relabelled, original = model.predict_all(x), as_is.predict_all(x)
    assert list(relabelled) == ["P0", "P1", "P2", "P3", "P4"]
    for stage in relabelled:  # every stage, not just the classifiers: the value embeddings read the logits
        assert torch.allclose(relabelled[stage], original[stage][:, theirs_of_ours], atol=1e-5), stage
    assert len(report.reordered) == 2 + 2 * 4 + 4  # coarse classifier, 4 stage classifiers, 4 value embeddings
    with pytest.raises(ValueError, match="class_order must be one of"):
        load_authors_model({"model": state}, "deepglobe/fpn_r52_pna", class_order="unknown_first")
