"""pna.analysis.cost: params, fvcore GFLOPs with the neighbourhood-attention handles, FPS, `pna cost`."""
import json
import warnings

import pytest

from pna.models import create_model
from pna.analysis.cost import profile_model
from pna.cli import dispatch

SMALL = dict(backbone="resnet18c", embed_dims=(64, 32, 32, 32), head_channels=16, aux_channels=8, window_size=3)


@pytest.fixture(autouse=True)
def _quiet_random_init():
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*RANDOMLY INITIALISED.*")
        yield


def test_profile_counts_params_flops_fps_and_the_na_products():
    row = profile_model("fcn_r50_os32_pna_nam", (64, 64), 3, fps_iters=1, warmup=0, **SMALL)
    model = create_model("fcn_r50_os32_pna_nam", 3, **SMALL)
    assert row["params"] == sum(p.numel() for p in model.parameters())  # aux head included
    assert row["gflops"] > 0 and row["fps"] > 0
    # q.k and attn.v: H * W * D * min(L, H) * min(L, W) multiply-adds each per stage (maps 2, 4, 8, 16;
    # the 2 x 2 map is smaller than L = 3, its window is the whole map)
    expected = sum(2 * s * s * d * min(3, s) ** 2 for s, d in zip((2, 4, 8, 16), SMALL["embed_dims"]))
    assert row["na_gflops"] * 1e9 == pytest.approx(expected, rel=1e-9)
    # the same count as the difference from an analysis without the NA handles (model rebuilt: same seed)
    plain = profile_model("fcn_r50_os32_pna_nam", (64, 64), 3, fps_iters=0, op_handles=False, **SMALL)
    assert (row["gflops"] - plain["gflops"]) * 1e9 == pytest.approx(expected, rel=1e-9)
    assert "prim::PythonOp.NeighbourhoodQK" in plain["skipped_ops"]


def test_profile_cli_json(capsys):
    assert dispatch(["cost", "fcn_r50_os32", "--size", "64", "64", "--num-classes", "3", "--fps-iters", "0", "--json",
                     "--set", "backbone=resnet18c", "--set", "head_channels=16"]) == 0
    printed = json.loads(capsys.readouterr().out)
    row = profile_model("fcn_r50_os32", (64, 64), 3, fps_iters=0, backbone="resnet18c", head_channels=16)
    assert printed["params"] == row["params"] and printed["fps"] is None and printed["gflops"] > 0
    with pytest.raises(ValueError, match="backbone"):
        profile_model("fcn_r50_os32", (64, 64), 3, fps_iters=0, backbne="resnet18c")
