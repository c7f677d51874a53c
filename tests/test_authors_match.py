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


# ---- the built paper-profile models -------------------------------------------------------------

def paper_model(name: str, num_classes: int = 19, **changes):
    """The paper profile's model of row ``name`` on a small random backbone (heads at full width)."""
    import warnings

    from pna.configs import load_config
    from pna.models import create_model

    cfg = load_config(name, "paper")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return create_model(cfg.model.name, num_classes, **{**cfg.model.overrides, "pretrained": None, **changes})


def close(measured: float, expected: float, tolerance: float = 0.1) -> bool:
    """Within ``tolerance`` (relative) of the formula: a sample std of >= 1800 weights is within ~5 %."""
    return abs(measured - expected) <= tolerance * expected


def weight_std(module) -> float:
    return module.weight.detach().std().item()


def fan_in(module) -> int:
    return module.weight[0].numel()


def fan_out(module) -> int:
    return module.weight.shape[0] * module.weight[0, 0].numel()


# (b)5: Detectron2's initialisation (fvcore: c2_xavier_fill = kaiming_uniform(a=1), std 1/sqrt(fan_in);
# c2_msra_fill = kaiming_normal(fan_out, relu), std sqrt(2/fan_out); both bias 0), classifiers normal(0, 0.001).
def test_d2_fpn_rows_start_from_detectron2s_initialisation():
    model = paper_model("cityscapes/fpn_r103_pna", backbone="resnet18c")
    for stage in model.refine.stages:
        assert close(weight_std(stage.query), 1 / math.sqrt(fan_in(stage.query)))
        assert close(weight_std(stage.value), 1 / math.sqrt(fan_in(stage.value)))
        for fc in (stage.mlp.fc1, stage.mlp.fc2):
            assert close(weight_std(fc), math.sqrt(2 / fan_out(fc))) and fc.bias.abs().max() == 0
        assert close(weight_std(stage.classifier), 0.001) and stage.classifier.bias.abs().max() == 0
    head = model.head
    for conv in list(head.fpn.lateral) + list(head.fpn.output):
        assert close(weight_std(conv), 1 / math.sqrt(fan_in(conv))) and conv.bias.abs().max() == 0
    first = head.scale_heads[0][0][0]
    assert close(weight_std(first), math.sqrt(2 / fan_out(first)))
    predictor = head.classifier[-1]      # 128 -> 19: only 2432 weights, hence the 10 % tolerance
    assert close(weight_std(predictor), math.sqrt(2 / fan_out(predictor))) and predictor.bias.abs().max() == 0


def test_d2_deeplab_rows_start_from_detectron2s_initialisation():
    model = paper_model("cityscapes/deeplabv3_r52_os16_pna", backbone="resnet18c")
    pool_conv = model.head.aspp.branches[0].conv[0]
    dilated = model.head.aspp.branches[2][0]
    for conv in (pool_conv, dilated, model.head.aspp.bottleneck[0]):
        assert close(weight_std(conv), 1 / math.sqrt(fan_in(conv)))
    assert pool_conv.bias.abs().max() == 0
    assert close(weight_std(model.head.classifier[-1]), 0.001)


# (b)6: MMSeg's: ConvModules kaiming-normal fan_out (std sqrt(2/fan_out)); aux classifier normal(0, 0.01);
# the cascade's coarse classifier and PNA head keep PyTorch defaults (std 1/sqrt(3 fan_in)).
def test_mm_rows_start_from_mmsegs_initialisation():
    model = paper_model("voc/deeplabv3_r101_os16_pna", 21, backbone="resnet18c")
    dilated = model.head.aspp.branches[2][0]
    assert close(weight_std(dilated), math.sqrt(2 / fan_out(dilated)))
    assert close(weight_std(model.aux_head.convs[0][0]), math.sqrt(2 / fan_out(model.aux_head.convs[0][0])))
    assert close(weight_std(model.aux_head.classifier[-1]), 0.01)
    coarse = model.head.classifier[-1]
    assert close(weight_std(coarse), 1 / math.sqrt(3 * fan_in(coarse)))
    query = model.refine.stages[0].query
    assert close(weight_std(query), 1 / math.sqrt(3 * fan_in(query))) and query.bias.abs().max() > 0
    baseline = paper_model("voc/deeplabv3_r101_os16", 21, backbone="resnet18c")  # no cascade: normal(0, 0.01)
    assert close(weight_std(baseline.head.classifier[-1]), 0.01)


def test_smoke_models_keep_pytorch_defaults():
    from pna.configs import load_config

    assert "init" not in load_config("cityscapes/fpn_r103_pna", "smoke").model.overrides
    model = paper_model("cityscapes/fpn_r103_pna", backbone="resnet18c", init="torch")
    query = model.refine.stages[0].query
    assert close(weight_std(query), 1 / math.sqrt(3 * fan_in(query)))


# (b)8: Detectron2's ASPP drops elements, MMSeg's heads whole channels.
def test_d2_aspp_dropout_is_element_wise_and_mm_dropout_channel_wise():
    x = torch.ones(1, 512, 16, 16)

    def zero_channel_fraction(dropout) -> float:
        torch.manual_seed(0)
        out = dropout.train()(x)
        return (out.flatten(2).abs().sum(-1) == 0).float().mean().item()

    d2 = paper_model("cityscapes/deeplabv3_r52_os16_pna", backbone="resnet18c").head.classifier[0]
    mm = paper_model("voc/deeplabv3_r101_os16_pna", 21, backbone="resnet18c").head.classifier[0]
    assert zero_channel_fraction(d2) == 0.0            # 256 elements per channel: never all dropped
    assert 0.05 < zero_channel_fraction(mm) < 0.15     # p = 0.1 of the channels
    assert d2.p == mm.p == 0.1


# (b)7: the MMSeg cascade runs its coarse head twice per training step; Detectron2 once.
@pytest.mark.parametrize("name, runs", [("voc/fcn_r50_os32_pna", 2), ("deepglobe/fpn_r52_pna", 1)])
def test_coarse_head_runs_per_training_step(name, runs):
    model = paper_model(name, 7, backbone="resnet18c", embed_dims=(64, 32, 32, 32)).train()
    calls, fed = [], []
    model.head.register_forward_hook(lambda m, args, out: calls.append(out))
    model.refine.register_forward_pre_hook(lambda m, args: fed.append(args[1]))
    norms = [m for m in model.head.modules() if isinstance(m, (torch.nn.BatchNorm2d,))]
    before = [int(m.num_batches_tracked) for m in norms]
    outputs = model(torch.randn(2, 3, 64, 64))
    assert len(calls) == runs
    assert all(int(m.num_batches_tracked) - b == runs for m, b in zip(norms, before))
    assert (fed[0] is outputs["P0"]) == (runs == 1)
    sum(o.sum() for o in outputs.values()).backward()   # the second pass carries gradients too
    assert all(p.grad is not None for p in model.head.parameters())
    calls.clear()
    model.eval()(torch.randn(1, 3, 64, 64))
    assert len(calls) == 1                               # at test: once


# (b)3: Detectron2's FPN rows pad every input to a multiple of 32, in training and at test.
def test_d2_fpn_rows_pad_inputs_to_multiples_of_32():
    from pna.models.segmentor import predict_at_input_size, size_divisor

    fpn = paper_model("deepglobe/fpn_r52_pna", 7, backbone="resnet18c", embed_dims=(64, 32, 32, 32))
    deeplab = paper_model("cityscapes/deeplabv3_r52_os16_pna", backbone="resnet18c")
    assert size_divisor(fpn) == 32 and size_divisor(deeplab) == 1
    seen = []
    fpn.backbone.register_forward_pre_hook(lambda m, args: seen.append(tuple(args[0].shape[-2:])))
    out = predict_at_input_size(fpn.eval(), torch.zeros(1, 3, 100, 70), ["P4"])["P4"]
    assert seen == [(128, 96)] and out.shape[-2:] == (100, 70)


def test_training_batches_of_a_d2_fpn_row_are_padded_to_32(tmp_path, monkeypatch):
    # A 60x60 crop trains as 64x64 (the authors' DeepGlobe 508 crops train as 512).
    from pna.configs import load_config
    from pna.engine.train import train
    from pna.models.segmentor import Segmentor

    monkeypatch.setenv("PNA_RUNS_DIR", str(tmp_path / "runs"))
    cfg = load_config("deepglobe/fpn_r52_pna", "smoke", [
        f"data.root={tmp_path / 'synthetic'}", "data.options={'num_train': 4, 'num_val': 1, 'size': 60, 'seed': 0}",
        "data.crop=(60, 60)", "data.pad=batch", "train.iters=1", "train.batch_size=2", "eval.batch_size=1",
        "model.overrides.embed_dims=(32, 32, 32, 32)", "model.overrides.head_channels=16",
        "model.overrides.window_size=3"])
    shapes = []
    original = Segmentor.predict_all
    monkeypatch.setattr(Segmentor, "predict_all", lambda self, x: shapes.append(tuple(x.shape)) or original(self, x))
    train(cfg, tmp_path / "run", results_dir=tmp_path / "results", progress=False)
    assert shapes[0] == (2, 3, 64, 64)


# (b)11-(b)13: the authors' Detectron2 evaluator, recorded beside ours where it differs.
def test_detectron2_evaluator_drops_pixels_outside_its_classes_and_classes_absent_from_the_labels():
    from pna.engine.metrics import ConfusionMatrix

    cm = ConfusionMatrix(num_classes=4, eval_classes=[0, 1, 2])
    labels = torch.tensor([0, 0, 0, 0, 1, 1, 1, 1])
    preds = torch.tensor([0, 0, 3, 3, 1, 1, 2, 2])   # class 2 predicted but in no label; 3 = "unknown"
    cm.update(preds, labels)
    # ours: IoU 0: 2/4, 1: 2/4, 2: 0/2 -> mean 1/3 (a predicted-only class counts 0; class 3 is an error)
    assert cm.miou() == pytest.approx(1 / 3)
    # Detectron2 over [0, 1, 2]: the two pixels predicted 3 are dropped (IoU 0 = 2/2), class 2 has
    # no label pixel so it leaves the mean: (1 + 2/4) / 2
    assert cm.miou_detectron2([0, 1, 2]) == pytest.approx(0.75)
    assert cm.summary(authors_classes=[0, 1, 2])["mIoU_authors"] == pytest.approx(0.75)
    assert "mIoU_authors" not in cm.summary()


def test_paper_configs_record_the_authors_evaluator_where_it_differs():
    from pna.configs import load_config
    from pna.data import info

    # DeepGlobe: their evaluator's ids 0..5 in MagNet's encoding (VinAIResearch/MagNet@7f5b876:
    # magnet/dataset/deepglobe.py:10-17), which their colour table follows, as our class ids
    magnet = ["unknown", "urban", "agriculture", "rangeland", "forest", "water", "barren"]
    ours = list(info("deepglobe").classes)
    assert load_config("deepglobe/fpn_r52_pna", "paper").eval.authors_classes == tuple(ours.index(n) for n in magnet[:6])
    assert load_config("trans10k/fpn_r52_pna", "paper").eval.authors_classes == (0, 1, 2)
    assert load_config("cityscapes/fpn_r103_pna", "paper").eval.authors_classes is None
