"""The NAM explorer: the weights it shows for a clicked pixel are the NAM's softmax, re-derived here by
hand in float64 from each stage's inputs and parameters (docs/architecture.md, "One refinement stage"
and "Neighbourhood attention"), the window sits where NATTEN puts it, and the widgets follow."""
import io
import warnings

import numpy as np
import pytest
import torch

from pna.analysis.explorer import NAMExplorer
from na_reference import natten_start  # the window rule, written once for the tests

PALETTE = [(0, 0, 0), (200, 0, 0), (0, 200, 0)]
HEAD_DIM = 32      # heads = D / 32 (docs/architecture.md, "One refinement stage")
LN_EPS = 1e-5      # nn.LayerNorm's default, which the authors' LayerNorms use


@pytest.fixture(scope="module")
def model():
    from pna.models import create_model
    torch.manual_seed(0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # randomly initialised backbone
        net = create_model("fcn_r50_os32_pna", 3, backbone="resnet10c_half", embed_dims=(64, 64, 32, 32),
                           head_channels=8, aux_channels=8, window_size=5)
    for stage in net.refine.stages:  # a visible relative-position bias, so a mix-up of slots shows
        torch.nn.init.normal_(stage.nam.rpb, std=1.0)
    return net.eval()


@pytest.fixture(scope="module")
def images():
    torch.manual_seed(1)
    return [{"image": torch.randn(3, 64, 96), "label": torch.randint(0, 3, (64, 96))},
            {"image": torch.randn(3, 64, 96), "label": torch.randint(0, 3, (64, 96))}]


def stage_inputs(model, image) -> dict[str, tuple[np.ndarray, dict[str, np.ndarray]]]:
    """Each refinement stage's backbone feature F_m (C, h, w) and its parameters, in float64."""
    feats = {}
    hooks = [stage.register_forward_pre_hook(lambda m, args, name=name: feats.__setitem__(name, args[0]))
             for name, stage in zip(model.stage_names[1:], model.refine.stages)]
    try:
        with torch.no_grad():
            model(image[None], return_all=True)
    finally:
        for hook in hooks:
            hook.remove()
    return {name: (feats[name][0].double().numpy(),
                   {k: v.detach().double().numpy() for k, v in stage.state_dict().items()})
            for name, stage in zip(model.stage_names[1:], model.refine.stages)}


def weights_by_hand(feat: np.ndarray, p: dict[str, np.ndarray], cell: tuple[int, int], window: int) -> np.ndarray:
    """softmax(q . k + bias) over the clamped window of ``cell``, for every head: (heads, Lh, Lw).

    Query x = 1x1 conv of F_m, LayerNorm over channels; q, k = rows 0..D-1 and D..2D-1 of one
    Linear(D, 2D); channel = head * 32 + d; q scaled by 32^-0.5; bias rpb[head, key_row - row + L - 1,
    key_col - col + L - 1]."""
    w = p["query.weight"][:, :, 0, 0]
    x = np.einsum("dc,chw->hwd", w, feat) + p["query.bias"]
    mean = x.mean(-1, keepdims=True)
    var = ((x - mean) ** 2).mean(-1, keepdims=True)
    x = (x - mean) / np.sqrt(var + LN_EPS) * p["norm_query.weight"] + p["norm_query.bias"]
    dim = x.shape[-1]
    qk_w, qk_b = p["nam.qk.weight"], p["nam.qk.bias"]
    h, wd = x.shape[:2]
    cy, cx = cell
    lh, lw = min(window, h), min(window, wd)
    top, left = natten_start(cy, h, window), natten_start(cx, wd, window)
    out = np.zeros((dim // HEAD_DIM, lh, lw))
    for head in range(dim // HEAD_DIM):
        channels = slice(head * HEAD_DIM, (head + 1) * HEAD_DIM)
        q = (qk_w[channels] @ x[cy, cx] + qk_b[channels]) * HEAD_DIM ** -0.5
        logits = np.zeros((lh, lw))
        for a in range(lh):
            for b in range(lw):
                row, col = top + a, left + b
                k = qk_w[dim:][channels] @ x[row, col] + qk_b[dim:][channels]
                logits[a, b] = float(q @ k) + p["nam.rpb"][head, row - cy + window - 1, col - cx + window - 1]
        e = np.exp(logits - logits.max())
        out[head] = e / e.sum()
    return out

@pytest.mark.parametrize("pixel", [(37, 61), (0, 0), (63, 95), (5, 90)])
def test_a_click_shows_the_pixels_nam_weights_for_every_stage_and_head(model, images, pixel):
    explorer = NAMExplorer(model, images, palette=PALETTE, classes=["bg", "a", "b"])
    inputs = stage_inputs(model, images[0]["image"])
    window = 5
    y, x = pixel
    for stage in explorer.stages:
        feat, params = inputs[stage]
        h, w = feat.shape[1:]
        stride = 64 // h
        cy, cx = y // stride, x // stride
        expected = weights_by_hand(feat, params, (cy, cx), window)
        assert explorer.heads(stage) == len(expected)
        for head in range(explorer.heads(stage)):
            explorer.update(stage=stage, head=head)
            view = explorer.click(x=x + 0.6, y=y + 0.2)  # a click lands anywhere inside the pixel
            assert view["pixel"] == (y, x) and view["cell"] == (cy, cx)
            assert view["window"] == (natten_start(cy, h, window), natten_start(cx, w, window),
                                      min(window, h), min(window, w))
            np.testing.assert_allclose(view["weights"], expected[head], rtol=1e-4, atol=1e-6)


def test_the_window_is_drawn_where_the_weights_are(model, images):
    explorer = NAMExplorer(model, images, palette=PALETTE, stage="P4")
    view = explorer.click(x=2, y=30)  # near the left border: the window is shifted, not padded
    pictures = explorer.render()
    top, left, win_h, win_w = view["window"]
    assert left == 0 and pictures["image"].shape == (64, 96, 3) == pictures["prediction"].shape
    assert explorer.display_scale() == 3  # the browser shows 64x96 at 192x288
    stride = 4  # P4
    cyan = np.array([0, 230, 255])
    for name in ("image", "prediction"):
        rgb = pictures[name]
        assert (rgb[top * stride, left * stride:(left + win_w) * stride] == cyan).all()  # the window's top edge
        assert (rgb[(top + win_h) * stride - 1, left * stride + 3] == cyan).all()  # its bottom edge
        assert (rgb[top * stride + 1, left * stride + 1] != cyan).any()  # and inside: the picture
    assert pictures["weights"].shape[:2] == (win_h * 28, win_w * 28)


def test_widgets_follow_clicks_sliders_stage_and_image(model, images):
    pytest.importorskip("ipywidgets", reason="ipywidgets is in the notebooks extra")
    from PIL import Image

    explorer = NAMExplorer(model, images, palette=PALETTE, stage="P1")
    box = explorer.widget
    controls = explorer._widgets
    assert controls["head"].max == explorer.heads("P1") - 1 == 1  # 64 channels / 32 per head
    before = controls["weights"].value
    explorer._on_event({"type": "click", "dataX": 40, "dataY": 10})  # ipyevents: in the image's pixels
    assert explorer.view["pixel"] == (10, 40) and (controls["row"].value, controls["col"].value) == (10, 40)
    controls["head"].value = 1
    assert explorer.view["head"] == 1 and controls["weights"].value != before
    controls["stage"].value = "P4"  # one head there: the head follows
    assert explorer.view["stage"] == "P4" and explorer.view["head"] == 0 and controls["head"].max == 0
    controls["col"].value = 95
    assert explorer.view["pixel"] == (10, 95)
    controls["index"].value = 1
    assert explorer.index == 1
    feat, params = stage_inputs(model, images[1]["image"])["P4"]
    np.testing.assert_allclose(explorer.view["weights"], weights_by_hand(feat, params, (2, 23), 5)[0],
                               rtol=1e-4, atol=1e-6)
    shown = Image.open(io.BytesIO(controls["image"].value))
    assert shown.size == (96, 64) and controls["image"].layout.width == "288px" and "bg" not in controls["text"].value  # classes default to ids
    assert "P4" in controls["text"].value and box.children


def test_bad_choices_are_named(model, images):
    explorer = NAMExplorer(model, images, palette=PALETTE)
    with pytest.raises(ValueError, match="stage 'P7'"):
        explorer.update(stage="P7")
    with pytest.raises(ValueError, match=r"pixel \(64, 0\) lies outside the 64x96 image"):
        explorer.update(pixel=(64, 0))
    with pytest.raises(ValueError, match="head 5"):
        explorer.update(head=5)
