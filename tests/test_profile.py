"""pna.analysis.cost: params, fvcore GFLOPs with the neighbourhood-attention handles, FPS, `pna cost`.

Expected values are counted by hand: the parameters and multiply-adds of a one-conv model, the
parameters of the refinement stages and of the auxiliary head from their layers (docs/architecture.md),
and the neighbourhood-attention products from their definition: per stage, q.k and attn.v each cost
H * W * D * Lh * Lw multiply-adds (every query meets Lh * Lw keys with D channels; Lh = min(L, H)).
"""
import json
import warnings

import pytest
import torch

import pna.analysis.cost as cost
from pna.analysis.cost import profile_model
from pna.cli import dispatch

SMALL = dict(backbone="resnet18c", embed_dims=(64, 32, 32, 32), head_channels=16, aux_channels=8, window_size=3)
RESNET18_WIDTHS = (64, 128, 256, 512)  # res2..res5 of ResNet-18 (basic blocks)
CLASSES = 3


@pytest.fixture(autouse=True)
def _quiet_random_init():
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*RANDOMLY INITIALISED.*")
        yield


class OneConv(torch.nn.Module):
    """A 3x3 conv (3 -> 8, bias) then a Linear over channels (8 -> 5, bias); an unused Linear (4 -> 2)
    stands for an auxiliary head: built, counted in the params, never run."""

    def __init__(self):
        super().__init__()
        self.conv = torch.nn.Conv2d(3, 8, 3, padding=1)
        self.linear = torch.nn.Linear(8, 5)
        self.aux = torch.nn.Linear(4, 2)

    def forward(self, x):
        return self.linear(self.conv(x).permute(0, 2, 3, 1))


def test_params_and_gflops_of_a_one_conv_model_by_hand(monkeypatch):
    monkeypatch.setattr(cost, "create_model", lambda name, num_classes, **kw: OneConv())
    row = profile_model("one_conv", (10, 12), CLASSES, fps_iters=0)
    assert row["params"] == (8 * 3 * 3 * 3 + 8) + (8 * 5 + 5) + (4 * 2 + 2) == 279
    assert row["params_m"] == pytest.approx(279e-6)
    # fvcore: one multiply-add = one FLOP; biases are not counted. Conv: every output (8 x 10 x 12)
    # takes 3 * 3 * 3 products; Linear: every pixel (10 x 12) takes 8 * 5.
    assert row["gflops"] * 1e9 == pytest.approx(10 * 12 * 8 * 27 + 10 * 12 * 8 * 5, rel=1e-12)
    assert row["na_gflops"] == 0 and row["fps"] is None


def _nam_stage_params(c_in: int, d: int, classes: int, window: int) -> int:
    """One NAM-only stage (docs/architecture.md, "One refinement stage"; MMSeg rows: embedding biases)."""
    heads = d // 32
    embeds = (c_in * d + d) + (classes * d + d)            # query and value 1x1 convs
    norms = 4 * 2 * d                                      # query, value, MLP and output LayerNorms
    nam = (d * 2 * d + 2 * d) + 2 * (d * d + d) + heads * (2 * window - 1) ** 2  # qk, v, proj, rpb table
    mlp = 2 * (d * d + d)                                  # Linear(D, D), GELU, Linear(D, D)
    return embeds + norms + nam + mlp + (d * classes + classes)  # + the 1x1 classifier


def test_profile_counts_params_flops_fps_and_the_na_products():
    size = (64, 96)  # maps 2x3, 4x6, 8x12, 16x24 at strides 32..4; the first is smaller than L = 3
    row = profile_model("fcn_r50_os32_pna_nam", size, CLASSES, fps_iters=1, warmup=0, **SMALL)
    plain = profile_model("fcn_r50_os32_pna_nam", size, CLASSES, fps_iters=0, op_handles=False, **SMALL)
    coarse = profile_model("fcn_r50_os32", size, CLASSES, fps_iters=0, **SMALL)
    no_aux = profile_model("fcn_r50_os32", size, CLASSES, fps_iters=0, aux=False, **SMALL)
    assert row["gflops"] > 0 and row["fps"] > 0
    # params: the four stages (res5..res2 with D = embed_dims) and the aux head (3x3 conv 256 -> 8 on
    # res4 without bias, BatchNorm, 1x1 classifier with bias) counted by hand
    stages = sum(_nam_stage_params(c, d, CLASSES, 3) for c, d in zip(reversed(RESNET18_WIDTHS), SMALL["embed_dims"]))
    assert row["params"] - coarse["params"] == stages
    assert coarse["params"] - no_aux["params"] == 8 * 256 * 9 + 2 * 8 + (8 * CLASSES + CLASSES)
    # q.k and attn.v: H * W * D * Lh * Lw multiply-adds each, per stage
    expected = sum(2 * h * w * d * min(3, h) * min(3, w)
                   for (h, w), d in zip(((2, 3), (4, 6), (8, 12), (16, 24)), SMALL["embed_dims"]))
    assert row["na_gflops"] * 1e9 == pytest.approx(expected, rel=1e-12)
    # without the NA handles fvcore skips those products and counts the rest alike
    assert (row["gflops"] - plain["gflops"]) * 1e9 == pytest.approx(expected, rel=1e-9)
    assert "prim::PythonOp.NeighbourhoodQK" in plain["skipped_ops"] and plain["na_gflops"] == 0
    # the aux head is built but not run in eval mode: no FLOPs
    assert coarse["gflops"] == pytest.approx(no_aux["gflops"], rel=1e-12)


def test_profile_cli_json(capsys):
    assert dispatch(["cost", "fcn_r50_os32", "--size", "64", "64", "--num-classes", "3", "--fps-iters", "0", "--json",
                     "--set", "backbone=resnet18c", "--set", "head_channels=16"]) == 0
    printed = json.loads(capsys.readouterr().out)
    row = profile_model("fcn_r50_os32", (64, 64), 3, fps_iters=0, backbone="resnet18c", head_channels=16)
    assert printed["params"] == row["params"] and printed["fps"] is None and printed["gflops"] > 0
    with pytest.raises(ValueError, match="backbone"):
        profile_model("fcn_r50_os32", (64, 64), 3, fps_iters=0, backbne="resnet18c")


def test_a_table_csv_is_never_replaced_under_resume(tmp_path):
    """`--resume` completes an --all-models CSV; a table CSV is measured whole, so `--table --resume`
    must refuse before measuring anything instead of overwriting the file."""
    out = tmp_path / "table1.csv"
    out.write_text("a user's measurements\n")
    with pytest.raises(ValueError, match="--resume completes an --all-models CSV"):
        dispatch(["cost", "--table", "table1", "--resume", "--out", str(out), "--fps-iters", "0", "--size", "64", "64"])
    assert out.read_text() == "a user's measurements\n"
