"""The NAM explorer: the weights it shows for a clicked pixel are the NAM's own (checked against
na2d_attn on the NAM's inputs), the window sits where NATTEN puts it, and the widgets follow."""
import io
import warnings

import numpy as np
import pytest
import torch

from pna.analysis.explorer import NAMExplorer
from pna.ops import na2d_attn
from pna.ops.window import window_starts

PALETTE = [(0, 0, 0), (200, 0, 0), (0, 200, 0)]


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


def _reference_weights(model, image) -> dict[str, torch.Tensor]:
    """na2d_attn (reference implementation) on the q and k each NAM computes from its input."""
    inputs = {}
    hooks = [stage.nam.register_forward_hook(lambda m, args, out, name=name: inputs.__setitem__(name, args[0]))
             for name, stage in zip(model.stage_names[1:], model.refine.stages)]
    with torch.no_grad():
        model(image[None], return_all=True)
    for hook in hooks:
        hook.remove()
    weights = {}
    for name, stage in zip(model.stage_names[1:], model.refine.stages):
        nam = stage.nam
        with torch.no_grad():
            q, k = nam.qk(inputs[name]).chunk(2, dim=-1)
            weights[name] = na2d_attn(nam.split_heads(q) * nam.scale, nam.split_heads(k), nam.rpb, nam.window_size,
                                      impl="reference")[0]
    return weights


@pytest.mark.parametrize("pixel", [(37, 61), (0, 0), (63, 95), (5, 90)])
def test_a_click_shows_the_pixels_nam_weights_for_every_stage_and_head(model, images, pixel):
    explorer = NAMExplorer(model, images, palette=PALETTE, classes=["bg", "a", "b"])
    reference = _reference_weights(model, images[0]["image"])
    y, x = pixel
    for stage in explorer.stages:
        for head in range(explorer.heads(stage)):
            explorer.update(stage=stage, head=head)
            view = explorer.click(x=x + 0.6, y=y + 0.2)  # a click lands anywhere inside the pixel
            _, h, w, _ = reference[stage].shape
            stride = 64 // h
            cy, cx = y // stride, x // stride
            kernel = model.refine.stages[0].nam.window_size
            win_h, win_w = min(kernel, h), min(kernel, w)
            top, left = int(window_starts(h, kernel)[cy]), int(window_starts(w, kernel)[cx])
            assert view["pixel"] == (y, x) and view["cell"] == (cy, cx)
            assert view["window"] == (top, left, win_h, win_w)
            expected = reference[stage][head, cy, cx].reshape(win_h, win_w).numpy()
            np.testing.assert_allclose(view["weights"], expected, rtol=1e-4, atol=1e-6)


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
    np.testing.assert_allclose(explorer.view["weights"],
                               _reference_weights(model, images[1]["image"])["P4"][0, 2, 23].reshape(5, 5).numpy(),
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
