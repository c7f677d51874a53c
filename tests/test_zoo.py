"""Every registered model: each paper-table row we train has one, and each trains a step on CPU."""
import math
import warnings

import pandas as pd
import pytest
import torch

from pna.configs.rows import ROWS
from pna.models import SegmentationLoss, create_model, get_spec, list_models
from pna.configs.rows import CITED_ONLY
from pna.analysis.paper_numbers import PAPER_NUMBERS

# Narrow heads and refinement keep every real backbone but make a CPU step cheap.
SMALL = dict(head_channels=16, embed_dims=(64, 32, 32, 32), aux_channels=16)


def paper_methods() -> pd.DataFrame:
    frame = pd.read_csv(PAPER_NUMBERS, dtype={"row": "string", "backbone": "string"})
    frame["backbone"] = frame["backbone"].fillna("")
    return frame.drop_duplicates(["table", "method", "backbone", "dataset", "row"])


# (table, method, backbone) as printed -> our model, read from the row table
PAPER_ROWS = {(r.table, r.method, r.printed_backbone): r.model for r in ROWS.values() if r.method}


def is_cited_only(method: str) -> bool:
    return any(name.lower() in method.lower() for name in CITED_ONLY)


def test_every_trained_paper_row_has_a_registered_model():
    frame = paper_methods()
    keys = {(t, m, b) for t, m, b in zip(frame["table"], frame["method"], frame["backbone"])}
    missing = sorted(k for k in keys if not is_cited_only(k[1]) and k not in PAPER_ROWS)
    assert not missing, f"paper rows without a model: {missing}"
    cited_with_model = sorted(k for k in PAPER_ROWS if is_cited_only(k[1]))
    assert not cited_with_model
    assert set(PAPER_ROWS) <= keys, f"PAPER_ROWS keys not in the paper: {sorted(set(PAPER_ROWS) - keys)}"
    assert set(PAPER_ROWS.values()) <= set(list_models())
    assert sorted(k[1] for k in keys if is_cited_only(k[1])) == sorted(
        ["DeeplabV3 + EBLNet", "DeeplabV3 + EBLNet", "DeeplabV3 + SegFix", "FaPN + PointRend", "FPN + GLNet*",
         "FPN + MagNet*", "ISDNet", "Translab", "EBLNet"])


def test_paper_rows_agree_with_the_training_configs():
    for _, r in paper_methods().iterrows():
        if pd.isna(r["row"]):
            continue
        config = ROWS[f"{r['dataset']}/{r['row']}"]
        assert config.model == PAPER_ROWS[(r["table"], r["method"], r["backbone"])], (r["table"], r["method"])


def test_specs_follow_the_documented_conventions():
    assert get_spec("deeplabv3_r101_os16").output_stride == 16 and get_spec("upernet_r101").output_stride == 32
    assert get_spec("fcn_r50_os8").output_stride == 8 and get_spec("deeplabv3plus_r50_os8").output_stride == 8
    assert get_spec("psp_swin_t_pna_nam").refine == "nam" and get_spec("psp_swin_t_pna").refine == "nam+sam"
    assert not get_spec("fpn_r103_pointrend").aux and get_spec("deeplabv3_r50_os16_pointrend").aux
    assert get_spec("fpn_r52_pna").window_size == 7 and get_spec("fcn_swin_b_pna").window_size == 9
    # the Detectron2 rows, no aux head, bias-less PNA embeddings, GN FPN, d2 ASPP
    d2 = [n for n in list_models() if "_r52" in n or "_r103" in n]
    assert len(d2) == 12 and all(not get_spec(n).aux for n in d2)
    assert all(not get_spec(n).embed_bias for n in d2 if n.endswith("_pna"))
    assert get_spec("fpn_r52_pna").head_kwargs == {"norm": "gn", "dropout": 0.0}
    assert get_spec("deeplabv3_r103_os16").head_kwargs["style"] == "d2"
    # every name that can say its ResNet stride does
    for name in list_models():
        spec = get_spec(name)
        if spec.head in ("aspp", "psp", "deeplabv3plus") and "swin" not in name:
            assert f"_os{spec.output_stride}" in name, name
    assert {get_spec(n).backbone for n in list_models() if "swin_b" in n} == {"swin_b"}


# SegFix's HRNet-W48 keeps every resolution: its step takes ~10 s on the 2-core CPU
@pytest.mark.parametrize("name", [pytest.param(n, marks=pytest.mark.slow) if n == "segfix_hrnet48" else n
                                  for n in list_models()])
def test_every_model_trains_a_step(name):
    torch.manual_seed(0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = create_model(name, 3, **SMALL).train()
    images, labels = torch.randn(2, 3, 32, 32), torch.randint(0, 3, (2, 32, 32))
    labels[0, :4] = 255
    outputs = model(images)
    spec = get_spec(name)
    expected = {"P0"} | ({"aux"} if spec.aux else set())
    expected |= {"points"} if spec.refine == "pointrend" else {"P1", "P2", "P3", "P4"} if spec.refine else set()
    expected = {"segfix"} if spec.head == "segfix" else expected  # SegFix predicts boundaries, not classes
    assert set(outputs) == expected
    total, _ = SegmentationLoss()(outputs, labels)
    assert math.isfinite(total.item())
    total.backward()
    no_grad = [n for n, p in model.named_parameters() if p.grad is None or not torch.isfinite(p.grad).all()]
    assert not no_grad, f"{name}: parameters without a finite gradient: {no_grad[:5]}"
