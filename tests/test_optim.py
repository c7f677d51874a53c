"""The authors' weight-decay rules and the warmup of the poly schedule, against the facts.

Weight decay (docs/authors_audit.csv, setting ``paramwise_rules``; docs/authors_audit_findings.md):
- MMSeg rows ("mm"): decay_mult 0 for parameters whose full name, in the authors' model, contains
  'norm', 'rpb', 'relative_position_bias_table' or 'absolute_pos_embed'. Their LayerNorms (the PNA
  stage's norm1, norm1_2, norm2, out_norm and the SAM's norm1/norm2) are named so; their BatchNorms are
  named bn* / downsample.1 / stem.N and DO decay, as do conv/linear biases and the SAM temperature.
- Detectron2 rows ("d2"): no decay for the parameters of BN / SyncBN / GN / IN / LayerNorm / LRN
  modules; the SAM's own LayerNorm class is not recognised and decays; rpb, biases and the SAM
  temperature decay.
The expected sets below are written by hand from the parameter names of a small PNA model (our names:
a stage's LayerNorms are norm_query, norm_value, norm_mlp, norm_out; the SAM's sam.norm1, sam.norm2).

Warmup (mmcv's linear warmup, which both the docs and pna.engine.optim cite): the lr at iteration t
< W is the regular (poly) lr at t times 1 - (1 - t / W) * (1 - warmup_ratio).
"""
import re
import warnings

import pytest
import torch

from pna.engine.optim import build_optimizer, build_scheduler, no_decay_names, poly_factor


@pytest.fixture(scope="module")
def names_and_model():
    from pna.models import create_model

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # randomly initialised backbone
        model = create_model("fcn_r50_os32_pna", 3, backbone="resnet18c", embed_dims=(32, 32, 32, 32),
                             head_channels=8, aux_channels=8, window_size=3)
    return [n for n, _ in model.named_parameters()], model


STAGE_LAYERNORM = r"refine\.stages\.\d\.(norm_query|norm_value|norm_mlp|norm_out)\.(weight|bias)"
SAM_LAYERNORM = r"refine\.stages\.\d\.sam\.norm[12]\.(weight|bias)"
RPB = r"refine\.stages\.\d\.nam\.rpb"
# BatchNorms: the deep stem's (conv1.1, conv1.4, bn1), the blocks' bn1/bn2, the shortcuts' downsample.1,
# and the heads' conv-BN-ReLU blocks (index 1)
BATCHNORM = (r"(backbone\.body\.(conv1\.[14]|bn1|layer\d\.\d\.bn[12]|layer\d\.0\.downsample\.1)"
             r"|head\.(convs\.\d|concat)\.1|aux_head\.convs\.0\.1)\.(weight|bias)")


def matching(names, *patterns):
    return {n for n in names if any(re.fullmatch(p, n) for p in patterns)}


def test_the_mmseg_rule_exempts_layernorms_and_rpb_only(names_and_model):
    names, model = names_and_model
    expected = matching(names, STAGE_LAYERNORM, SAM_LAYERNORM, RPB)
    assert len(expected) == 4 * (8 + 4 + 1)  # per stage: 4 LayerNorms, the SAM's 2, one bias table
    assert no_decay_names(model, "mm") == expected
    for decays in ("backbone.body.bn1.weight", "backbone.body.layer2.0.downsample.1.bias", "head.convs.0.1.bias",
                   "refine.stages.0.sam.attn.temperature", "refine.stages.0.nam.qk.bias", "refine.stages.3.query.bias",
                   "refine.stages.2.classifier.bias", "aux_head.convs.0.1.weight"):
        assert decays in names and decays not in no_decay_names(model, "mm"), decays


def test_the_detectron2_rule_exempts_norm_layers_but_not_the_sams(names_and_model):
    names, model = names_and_model
    expected = matching(names, STAGE_LAYERNORM, BATCHNORM)
    batchnorms = matching(names, BATCHNORM)
    # resnet18c: 3 stem BNs, 2 per basic block x 8 blocks, 3 shortcuts; FCN head 3 conv-BN; aux 1
    assert len(batchnorms) == 2 * (3 + 16 + 3 + 3 + 1)
    assert no_decay_names(model, "d2") == expected
    for decays in ("refine.stages.0.sam.norm1.weight", "refine.stages.3.sam.norm2.bias", "refine.stages.1.nam.rpb",
                   "refine.stages.0.sam.attn.temperature", "head.classifier.1.bias", "refine.stages.0.nam.proj.bias"):
        assert decays in names and decays not in no_decay_names(model, "d2"), decays


def test_the_rules_reach_the_optimiser_groups(names_and_model):
    names, model = names_and_model
    params = dict(model.named_parameters())
    for rule, exempt in (("mm", matching(names, STAGE_LAYERNORM, SAM_LAYERNORM, RPB)),
                         ("d2", matching(names, STAGE_LAYERNORM, BATCHNORM))):
        groups = {g["weight_decay"]: {id(p) for p in g["params"]} for g in build_optimizer(model, 1e-3, 0.05, decay_rule=rule).param_groups}
        assert groups[0.0] == {id(params[n]) for n in exempt}
        assert groups[0.05] == {id(params[n]) for n in set(names) - exempt}
    with pytest.raises(ValueError, match="weight-decay rule"):
        no_decay_names(model, "timm")


# (step, hand-computed factor) for total 100, warmup 10, ratio 0.1, power 0.9:
# poly(t) = (1 - t/100)^0.9; warmup multiplier 1 - (1 - t/10) * 0.9
WARMUP_POINTS = [
    (0, 0.1),                    # 1.0 * 0.1
    (2, 0.981982 * 0.28),        # 0.98^0.9 = exp(0.9 ln 0.98) = 0.981982; 1 - 0.8 * 0.9 = 0.28
    (5, 0.954885 * 0.55),        # 0.95^0.9 = 0.954885; 1 - 0.5 * 0.9 = 0.55
    (9, 0.918623 * 0.91),        # 0.91^0.9 = 0.918623; 1 - 0.1 * 0.9 = 0.91
    (10, 0.909533),              # 0.9^0.9: warmup over, the poly value
]


@pytest.mark.parametrize("step, factor", WARMUP_POINTS)
def test_warmup_multiplies_the_poly_value(step, factor):
    assert poly_factor(step, 100, warmup_iters=10, warmup_ratio=0.1, power=0.9) == pytest.approx(factor, rel=2e-6)


def test_the_scheduler_follows_the_warmup_and_the_min_lr():
    param = torch.nn.Parameter(torch.zeros(1))
    optimizer = torch.optim.SGD([param], lr=0.5)
    scheduler = build_scheduler(optimizer, total_iters=100, warmup_iters=10, warmup_ratio=0.1, power=0.9, min_lr=0.05)
    lrs = []
    for _ in range(6):
        lrs.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        scheduler.step()
    # step 5: ((0.5 - 0.05) * 0.95^0.9 + 0.05) * 0.55 (mmcv: (base - min) * poly + min, then the warmup)
    assert lrs[5] == pytest.approx((0.45 * 0.954885 + 0.05) * 0.55, rel=2e-6)
    assert lrs[0] == pytest.approx(0.5 * 0.1)
