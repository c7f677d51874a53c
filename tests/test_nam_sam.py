"""NAM (neighbourhood attention on the backbone feature, values from the prediction), SAM (Restormer
block) and one refinement stage."""
import pytest
import torch

from pna.models import NeighbourhoodAggregation, RefineStage, SelfAggregation
from pna.ops.na2d_reference import gather_windows, na2d_attn_reference


@pytest.mark.parametrize("size,window", [((6, 7), 3), ((2, 3), 5)])  # the second map is smaller than L
def test_nam_attention_sums_to_one_and_matches_the_op(size, window):
    nam = NeighbourhoodAggregation(dim=64, num_heads=2, window_size=window)
    x, v = torch.randn(2, *size, 64), torch.randn(2, *size, 64)
    out, attn = nam(x, v, return_attn=True)
    slots = min(window, size[0]) * min(window, size[1])
    assert attn.shape == (2, 2, *size, slots) and out.shape == (2, *size, 64)
    torch.testing.assert_close(attn.sum(-1), torch.ones(2, 2, *size))
    q, k = (nam.split_heads(t) for t in nam.qk(x).chunk(2, dim=-1))
    expected_attn = na2d_attn_reference(q * 32 ** -0.5, k, nam.rpb, window)  # q scaled by head_dim^-0.5
    torch.testing.assert_close(attn, expected_attn)
    values = gather_windows(nam.split_heads(nam.v(v)), window)
    aggregated = torch.einsum("bhijt,bhijtd->bijhd", attn, values).flatten(3)
    torch.testing.assert_close(out, nam.proj(aggregated))
    torch.testing.assert_close(nam(x, v), out)


def test_nam_bias_table_and_errors():
    nam = NeighbourhoodAggregation(dim=96, num_heads=3, window_size=9)
    assert nam.rpb.shape == (3, 17, 17) and 0.017 < nam.rpb.std() < 0.023  # trunc-normal, std 0.02
    with pytest.raises(ValueError, match="window_size"):
        NeighbourhoodAggregation(dim=96, num_heads=3, window_size=4)
    with pytest.raises(ValueError, match="num_heads"):
        NeighbourhoodAggregation(dim=96, num_heads=5)


def test_sam_residual_shape_and_scale_equivariance():
    sam = SelfAggregation(dim=64, num_heads=2)
    x = torch.randn(2, 64, 5, 6)
    assert sam(x).shape == x.shape
    assert torch.equal(sam.attn.temperature.detach(), torch.ones(2, 1, 1))
    assert sam.ffn.shrink.in_channels == int(2.66 * 64) and sam.norm1.eps == 1e-5
    assert all(m.bias is None for m in sam.modules() if isinstance(m, torch.nn.Conv2d))
    # q and k are L2-normalised over positions and no conv has a bias: MDTA(c x) = c MDTA(x).
    torch.testing.assert_close(sam.attn(3.0 * x), 3.0 * sam.attn(x))
    with torch.no_grad():  # with both output projections zero the block is the identity (pure residual)
        sam.attn.proj.weight.zero_()
        sam.ffn.shrink.weight.zero_()
    torch.testing.assert_close(sam(x), x)


def test_sam_parameter_count_per_spec():
    d = 96
    hidden = int(2.66 * d)
    mdta = 3 * d * d + 3 * d * 9 + d * d + 3  # qkv, depthwise, projection, one temperature per head
    gdfn = d * 2 * hidden + 2 * hidden * 9 + hidden * d
    expected = mdta + gdfn + 2 * 2 * d  # two LayerNorms with bias
    assert sum(p.numel() for p in SelfAggregation(d, 3).parameters()) == expected


def test_refine_stage_structure_and_parameter_count():
    c, d, k, window = 48, 64, 5, 3
    stage = RefineStage(c, k, d, head_dim=32, window_size=window, use_sam=False)
    expected = (c * d + d) + (k * d + d) + 4 * 2 * d + (2 * d * d + 2 * d) + 2 * (d * d + d) \
        + 2 * (d * d + d) + (d * k + k) + 2 * (2 * window - 1) ** 2
    assert sum(p.numel() for p in stage.parameters()) == expected
    assert isinstance(stage.sam, torch.nn.Identity)


def test_refine_stage_sam_sees_the_unnormalised_query_and_prediction_is_resized():
    stage = RefineStage(16, 3, 64, window_size=3, use_sam=True)
    seen = {}
    stage.query.register_forward_hook(lambda m, i, o: seen.update(query=o))
    stage.sam.register_forward_hook(lambda m, i, o: seen.update(sam_in=i[0]))
    stage.value.register_forward_hook(lambda m, i, o: seen.update(value_in=i[0]))
    prev = torch.randn(1, 3, 4, 4)
    logits, attn = stage(torch.randn(1, 16, 8, 8), prev, return_attn=True)
    assert logits.shape == (1, 3, 8, 8) and attn.shape == (1, 2, 8, 8, 9)
    assert torch.equal(seen["sam_in"], seen["query"])
    assert torch.equal(seen["value_in"], prev.repeat_interleave(2, -1).repeat_interleave(2, -2))  # nearest
    bilinear = RefineStage(16, 3, 64, window_size=3, resize_mode="bilinear")
    expected = torch.nn.functional.interpolate(prev, size=(8, 8), mode="bilinear", align_corners=False)
    torch.testing.assert_close(bilinear.resize(prev, (8, 8)), expected)
    with pytest.raises(ValueError, match="resize_mode"):
        RefineStage(16, 3, 64, resize_mode="area")


def test_segmentor_attention_maps():
    import warnings

    from pna.models import create_model
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = create_model("fcn_r50_os32_pna_nam", 3, backbone="resnet18c", embed_dims=(64, 32, 32, 32),
                             head_channels=16, window_size=3).eval()
    maps = model.attention_maps(torch.randn(1, 3, 64, 64))
    assert {k: tuple(v.shape) for k, v in maps.items()} == {
        "P1": (1, 2, 2, 2, 4), "P2": (1, 1, 4, 4, 9), "P3": (1, 1, 8, 8, 9), "P4": (1, 1, 16, 16, 9)}


def _gdfn_by_hand(ffn, x_nhwc: torch.Tensor) -> torch.Tensor:
    """Restormer's GDFN written out on an NCHW map with plain convolutions (no channels-last helper)."""
    import torch.nn.functional as F

    x = x_nhwc.permute(0, 3, 1, 2)
    hidden = F.conv2d(F.conv2d(x, ffn.expand.weight), ffn.dw.weight, padding=1, groups=ffn.dw.groups)
    x1, x2 = hidden.chunk(2, dim=1)
    return F.conv2d(F.gelu(x1) * x2, ffn.shrink.weight).permute(0, 2, 3, 1)


@pytest.mark.parametrize("batch,height,width", [(2, 37, 130), (1, 70, 64), (1, 17, 500)])
def test_sam_feed_forward_in_slabs_equals_the_whole_map(batch, height, width, monkeypatch):
    """Without gradients the GDFN runs in slabs of rows with one halo row each side; the values are
    those of the convolutions over the whole map (slab borders inside the map and a last slab of one row)."""
    from pna.models import sam

    monkeypatch.setattr(sam, "SLAB_PIXELS", 2 * width)  # rows per slab: max(8, 2) = 8
    torch.manual_seed(0)
    ffn = sam.GatedFeedForward(dim=16).eval()
    x = torch.randn(batch, height, width, 16)
    with torch.no_grad():
        expected = _gdfn_by_hand(ffn, x)
        got = ffn.forward_nhwc(x)
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-5)
    calls = []
    hidden = ffn._hidden
    monkeypatch.setattr(ffn, "_hidden", lambda t: calls.append(t.shape[1]) or hidden(t))
    x.requires_grad_()
    whole = ffn.forward_nhwc(x)  # with gradients: the whole map in one piece (autograd keeps it anyway)
    whole.sum().backward()
    assert calls == [height] and x.grad.shape == x.shape
    torch.testing.assert_close(whole.detach(), expected, rtol=1e-5, atol=1e-5)
    calls.clear()
    with torch.no_grad():
        ffn.forward_nhwc(x)
    slabs = -(-height // 8)
    assert len(calls) == slabs and calls[0] == 9 and sum(calls) == height + 2 * (slabs - 1)  # halo rows


def test_fvcore_counts_the_feed_forward_of_the_model_not_its_slabs(monkeypatch):
    """Traced without gradients (as a FLOP count may be), the GDFN counts the model's multiply-adds
    (fvcore: one per MAC): H W (C 2h + 9 2h + h C), written out, not the slabs' recomputed halo rows."""
    from fvcore.nn import FlopCountAnalysis

    from pna.models import sam

    dim, height, width = 16, 70, 64
    monkeypatch.setattr(sam, "SLAB_PIXELS", 2 * width)  # 8-row slabs without gradients
    ffn = sam.GatedFeedForward(dim).eval()
    hidden = int(dim * 2.66)
    expected = height * width * (dim * 2 * hidden + 9 * 2 * hidden + hidden * dim)
    with torch.no_grad():
        analysis = FlopCountAnalysis(ffn, torch.randn(1, dim, height, width))
        analysis.unsupported_ops_warnings(False)
        assert analysis.total() == expected
