"""The NAM explorer: click a pixel, see which neighbours it takes its class evidence from.

Three views side by side: the image, the chosen stage's prediction, and the chosen pixel's L x L
similarity weights S (the NAM's softmax) for the chosen head, with the window drawn on the image
and the prediction. Click the image or the prediction (or move the row/column sliders) to choose
the pixel; the stage, head and image have their own widgets.

The weights of every pixel, head and stage are computed once per image (one forward pass,
``Segmentor.attention_maps``, on the image padded to the model's size divisor as the test protocol
pads it); an update only indexes them and redraws three small pictures. ``pna.inference.PhotoSet``
makes a user's photos a dataset.

Without a frontend (papermill, nbval) building the explorer renders its first view and nothing
else; :meth:`NAMExplorer.click` is the same callback a click in the browser runs.

Example::

    >>> import warnings; warnings.simplefilter("ignore")
    >>> import torch
    >>> from pna.models import create_model
    >>> model = create_model("fcn_r50_os32_pna", 3, backbone="resnet10c_half", embed_dims=(32, 32, 32, 32),
    ...                      head_channels=8, aux_channels=8, window_size=3)
    >>> image = torch.randn(3, 64, 64)
    >>> explorer = NAMExplorer(model, [{"image": image}], palette=[(0, 0, 0), (128, 0, 0), (0, 128, 0)])
    >>> view = explorer.click(x=40, y=10)          # what a click at column 40, row 10 shows
    >>> view["stage"], view["cell"], view["weights"].shape
    ('P4', (2, 10), (3, 3))
    >>> round(float(view["weights"].sum()), 4)    # a softmax over the window
    1.0
"""
from __future__ import annotations

import html
from typing import Mapping, Sequence

import numpy as np
import torch

from pna.analysis.figures import colorize, to_display_image, window_origin
from pna.analysis.pictures import colormap, encode, enlarge, outline

MIN_DISPLAY = 256  # small images are shown enlarged (by the browser) to at least this many pixels
WEIGHT_CELL = 28   # pixels per window slot in the weights view
FORMATS = {"image": "jpeg", "prediction": "png", "weights": "png"}  # the three pictures, left to right


class NAMExplorer:
    """Interactive view of one model's NAM weights over the images of ``dataset``.

    ``dataset[i]`` must give ``{"image": normalised (3, H, W)}`` (a ``"label"`` is shown in the legend
    when present); ``palette`` and ``classes`` default to the dataset's. ``pixel`` is (row, col) in
    image coordinates. The widget is built on first access of :attr:`widget` (ipywidgets).
    """

    def __init__(self, model: torch.nn.Module, dataset, index: int = 0, stage: str | None = None, head: int = 0,
                 pixel: tuple[int, int] | None = None, palette: Sequence[Sequence[int]] | None = None,
                 classes: Sequence[str] | None = None):
        if getattr(model, "refine", None) is None:
            raise ValueError("the explorer needs a model with refinement stages (a PNA row), got one without")
        self.model, self.dataset = model.eval(), dataset
        self.palette = list(palette if palette is not None else dataset.palette)
        self.classes = list(classes if classes is not None else getattr(dataset, "classes", range(len(self.palette))))
        self.stages = list(model.stage_names[1:])
        self.kernels = {s: stage.nam.window_size for s, stage in zip(self.stages, model.refine.stages)}
        self.stage = stage or self.stages[-1]
        if self.stage not in self.stages:
            raise ValueError(f"stage {self.stage!r}: this model's NAM stages are {self.stages}")
        self.head, self.index = head, index
        self._loaded: dict | None = None
        self._load(index)
        height, width = self._loaded["size"]
        self.pixel = pixel if pixel is not None else (height // 2, width // 2)
        self._widgets: dict | None = None
        self.view = self._compute()

    # ---- data: computed once per image --------------------------------------------------------
    @torch.no_grad()
    def _load(self, index: int) -> None:
        from pna.analysis.figures import predict_labels
        from pna.models.segmentor import pad_to_multiple, size_divisor

        item = self.dataset[index]
        image, device = item["image"], next(self.model.parameters()).device
        padded = pad_to_multiple(image[None].to(device), size_divisor(self.model))
        attention = self.model.attention_maps(padded)
        self._loaded = {
            "index": index, "size": tuple(image.shape[-2:]), "grid": tuple(padded.shape[-2:]),  # grid: padded
            "picture": to_display_image(image), "label": item.get("label"),
            "attention": {s: a[0].float().cpu().numpy() for s, a in attention.items()},  # (heads, h, w, L*L)
            "predictions": {s: p.numpy() for s, p in predict_labels(self.model, image).items()},
        }

    def heads(self, stage: str | None = None) -> int:
        return self._loaded["attention"][stage or self.stage].shape[0]

    def _compute(self) -> dict:
        """What the current (stage, head, pixel) shows: the weights, the window, the query cell."""
        attn = self._loaded["attention"][self.stage]
        heads, h, w, slots = attn.shape
        (height, width), (grid_h, grid_w) = self._loaded["size"], self._loaded["grid"]
        y, x = self.pixel
        if not (0 <= y < height and 0 <= x < width):
            raise ValueError(f"pixel {self.pixel} lies outside the {height}x{width} image")
        if not 0 <= self.head < heads:
            raise ValueError(f"head {self.head}: stage {self.stage} has {heads} head(s)")
        kernel = self.kernels[self.stage]
        win_h, win_w = min(kernel, h), min(kernel, w)
        cy, cx = min(y * h // grid_h, h - 1), min(x * w // grid_w, w - 1)
        top, left = window_origin(cy, h, kernel), window_origin(cx, w, kernel)
        all_heads = attn[:, cy, cx].reshape(heads, win_h, win_w)
        return {"stage": self.stage, "head": self.head, "pixel": (y, x), "cell": (cy, cx), "map_size": (h, w),
                "window": (top, left, win_h, win_w), "weights": all_heads[self.head], "all_heads": all_heads}

    # ---- pictures -----------------------------------------------------------------------------
    def display_scale(self) -> int:
        """How many screen pixels an image pixel takes: the pictures are sent at the image's own
        resolution (small in a stored notebook) and enlarged by the browser."""
        return max(1, -(-MIN_DISPLAY // max(self._loaded["size"])))

    def _to_pixels(self, view: dict) -> tuple[tuple[int, int, int, int], tuple[int, int, int, int]]:
        """The window and the query cell as (top, left, bottom, right) in image pixels."""
        (grid_h, grid_w), (h, w) = self._loaded["grid"], view["map_size"]
        sy, sx = grid_h / h, grid_w / w  # image pixels per map cell
        top, left, win_h, win_w = view["window"]
        cy, cx = view["cell"]
        window = (round(top * sy), round(left * sx), round((top + win_h) * sy), round((left + win_w) * sx))
        cell = (round(cy * sy), round(cx * sx), round((cy + 1) * sy), round((cx + 1) * sx))
        return window, cell

    def render(self, view: dict | None = None) -> dict[str, np.ndarray]:
        """The three pictures (RGB uint8) of ``view`` (default: the current one): the image and the
        prediction at the image's resolution, the weights with ``WEIGHT_CELL`` pixels per slot."""
        view = view or self.view
        (height, width), (grid_h, grid_w), (h, w) = self._loaded["size"], self._loaded["grid"], view["map_size"]
        window, cell = self._to_pixels(view)
        scale = float(view["all_heads"].max()) or 1.0  # one colour scale for every head of this pixel

        # the image, dimmed outside the window, the chosen head's weights blended in inside it
        picture = (self._loaded["picture"] * 255).astype(np.uint8)
        spread = np.zeros((h, w), dtype=np.float32)
        top, left, win_h, win_w = view["window"]
        spread[top:top + win_h, left:left + win_w] = view["weights"] / scale
        rows = (np.arange(height) * h // grid_h).clip(0, h - 1)
        cols = (np.arange(width) * w // grid_w).clip(0, w - 1)
        heat = spread[rows][:, cols]
        inside = np.zeros(heat.shape, dtype=bool)
        inside[window[0]:window[2], window[1]:window[3]] = True
        blended = np.where(inside[..., None], 0.45 * picture + 0.55 * colormap(heat), 0.5 * picture)
        image = blended.astype(np.uint8)

        prediction = colorize(self._loaded["predictions"][self.stage], self.palette)
        for rgb in (image, prediction):
            outline(rgb, *window, colour=(0, 230, 255), width=1)
            outline(rgb, *cell, colour=(255, 40, 40), width=1)

        grid = enlarge(colormap(view["weights"] / scale), WEIGHT_CELL)
        cy, cx = view["cell"]
        qy, qx = (cy - top) * WEIGHT_CELL, (cx - left) * WEIGHT_CELL
        outline(grid, qy, qx, qy + WEIGHT_CELL, qx + WEIGHT_CELL, colour=(255, 40, 40), width=2)
        return {"image": image, "prediction": prediction, "weights": grid}

    def describe(self, view: dict | None = None) -> str:
        view = view or self.view
        (h, w), (top, left, win_h, win_w) = view["map_size"], view["window"]
        weights = view["weights"]
        dy, dx = np.unravel_index(int(weights.argmax()), weights.shape)
        stride = self._loaded["grid"][0] / h
        return (f"{view['stage']} (stride {stride:g}, {h}x{w} map), head {view['head']}: query pixel {view['pixel']} "
                f"= cell {view['cell']}; window rows {top}-{top + win_h - 1}, cols {left}-{left + win_w - 1}; "
                f"largest weight {weights.max():.3f} at cell ({top + dy}, {left + dx}), the query's own "
                f"{weights[view['cell'][0] - top, view['cell'][1] - left]:.3f}; colours: 0 to "
                f"{view['all_heads'].max():.3f} (the largest over this pixel's heads)")

    # ---- interaction --------------------------------------------------------------------------
    def update(self, stage: str | None = None, head: int | None = None, pixel: tuple[int, int] | None = None,
               index: int | None = None) -> dict:
        """Change any of image / stage / head / pixel, recompute the view and redraw the widget."""
        if index is not None and index != self._loaded["index"]:
            self._load(index)
            self.index = index
            height, width = self._loaded["size"]
            y, x = pixel or self.pixel  # images may differ in size: keep the pixel inside the new one
            pixel = (min(y, height - 1), min(x, width - 1))
        if stage is not None and stage not in self.stages:
            raise ValueError(f"stage {stage!r}: this model's NAM stages are {self.stages}")
        previous_stage = self.stage
        if stage is not None:
            self.stage = stage
            if stage != previous_stage:  # another stage may have fewer heads
                head = min(self.head if head is None else head, self.heads() - 1)
        previous = previous_stage, self.head, self.pixel
        self.head = self.head if head is None else head
        self.pixel = tuple(pixel) if pixel is not None else self.pixel
        try:
            self.view = self._compute()
        except ValueError:
            self.stage, self.head, self.pixel = previous  # a bad choice leaves the view as it was
            raise
        self._refresh()
        return self.view

    def click(self, x: float, y: float) -> dict:
        """The callback of a click at (x, y) in image pixels (ipyevents' dataX / dataY)."""
        height, width = self._loaded["size"]
        return self.update(pixel=(min(max(int(y), 0), height - 1), min(max(int(x), 0), width - 1)))

    def _on_event(self, event: Mapping) -> None:
        if event.get("type") == "click" and "dataX" in event:  # ipyevents: in the image's own pixels
            self.click(event["dataX"], event["dataY"])

    # ---- the widget ---------------------------------------------------------------------------
    @property
    def widget(self):
        """The explorer as an ipywidgets box (built on first use)."""
        if self._widgets is None:
            self._build()
        return self._widgets["box"]

    def _ipython_display_(self) -> None:
        from IPython.display import display

        display(self.widget)

    def _build(self) -> None:
        import ipywidgets as W

        height, width = self._loaded["size"]
        pictures = {name: W.Image(format=FORMATS[name], layout=W.Layout(margin="2px")) for name in FORMATS}
        controls = {
            "stage": W.ToggleButtons(options=self.stages, value=self.stage, description="stage",
                                     style={"button_width": "48px"}),
            "head": W.IntSlider(value=self.head, min=0, max=self.heads() - 1, description="head"),
            "row": W.IntSlider(value=self.pixel[0], min=0, max=height - 1, description="row"),
            "col": W.IntSlider(value=self.pixel[1], min=0, max=width - 1, description="column"),
            "index": W.BoundedIntText(value=self.index, min=0, max=len(self.dataset) - 1, description="image",
                                      layout=W.Layout(width="160px")),
        }
        self._widgets = {**pictures, **controls, "caption": W.HTML(), "text": W.HTML(), "busy": False}
        for control in controls.values():
            control.observe(self._on_control, names="value")
        try:
            from ipyevents import Event
        except ImportError:  # no clicks, the sliders still work
            self._widgets["events"] = []
        else:
            self._widgets["events"] = [Event(source=pictures[name], watched_events=["click"], prevent_default_action=True)
                                       for name in ("image", "prediction")]
            for event in self._widgets["events"]:
                event.on_dom_event(self._on_event)
        # Few boxes and labels: an executed notebook stores every widget's state (about 1 kB each).
        self._widgets["box"] = W.VBox([
            W.HBox([controls["stage"], controls["index"]]),
            W.HBox([controls["head"], controls["row"], controls["col"]]),
            self._widgets["caption"], W.HBox(list(pictures.values())), self._widgets["text"],
        ])
        self._widgets["box"].add_class("pna-explorer")  # enlarged pixels stay sharp squares:
        self._widgets["style"] = "<style>.pna-explorer img {image-rendering: pixelated;}</style>"
        self._refresh()

    def _on_control(self, change) -> None:
        if self._widgets["busy"]:
            return
        c = self._widgets
        self.update(stage=c["stage"].value, head=c["head"].value, pixel=(c["row"].value, c["col"].value),
                    index=c["index"].value)

    def _legend(self) -> str:
        present = set(np.unique(self._loaded["predictions"][self.stage]).tolist())
        if self._loaded["label"] is not None:
            present |= set(np.unique(np.asarray(self._loaded["label"])).tolist())
        swatch = ("<span style='display:inline-block;width:12px;height:12px;background:rgb{};border:1px solid #888;"
                  "margin:0 4px 0 10px;vertical-align:middle'></span>{}")
        return "classes: " + "".join(swatch.format(tuple(self.palette[k]), html.escape(str(self.classes[k])))
                                     for k in sorted(present) if k < len(self.classes))

    def _refresh(self) -> None:
        """Push the current view into the widgets (when they exist)."""
        if self._widgets is None:
            return
        c = self._widgets
        c["busy"] = True  # setting the controls below must not re-enter update()
        try:
            height, width = self._loaded["size"]
            c["stage"].value, c["index"].value = self.stage, self.index
            c["head"].max = self.heads() - 1
            c["head"].value = self.head
            c["row"].max, c["col"].max = height - 1, width - 1
            c["row"].value, c["col"].value = self.pixel
            for name, rgb in self.render().items():
                c[name].value = encode(rgb, FORMATS[name])
                c[name].layout.width = f"{rgb.shape[1] * (self.display_scale() if name != 'weights' else 1)}px"
            _, _, win_h, win_w = self.view["window"]
            parts = ["<b>image</b>: window (cyan), query (red)", f"<b>prediction {self.stage}</b>",
                     f"<b>similarity weights S</b> ({win_h}x{win_w}), head {self.head}"]
            c["caption"].value = c["style"] + " &nbsp;|&nbsp; ".join(parts) + " &nbsp;&middot; click the image or the prediction"
            c["text"].value = (f"{self._legend()}<div class='pna-status' style='font-family: monospace'>"
                               f"{self.describe()}</div>")
        finally:
            c["busy"] = False
