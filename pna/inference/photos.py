"""A user's images as a small dataset for the notebooks: the explorer and the walkthrough on any photo.

``PhotoSet(model, ["street.jpg"])[0]`` is what a dataset item is to the analysis code
(``{"image": normalised 3xhxw, "id"}``), prepared as the model's test protocol prepares it (the
row's test resize; the explorer pads to the model's size divisor and crops back), plus the image
as read (``rgb``) and its own size; ``palette`` and ``classes`` are the model's label space. There
is no ``label``: the parts of a notebook that need one are skipped. :meth:`PhotoSet.predict` gives
every stage's labels at the photo's own size (the row's protocol, as ``pna predict``) and
:meth:`PhotoSet.figure` the stage figure of ``pna predict --figure``.

Example::

    >>> import tempfile, warnings; warnings.simplefilter("ignore")
    >>> from PIL import Image
    >>> from pna.configs import load_config
    >>> from pna.models import create_model
    >>> folder = Path(tempfile.mkdtemp())
    >>> cfg = load_config("voc/fcn_r50_os32_pna", "smoke")
    >>> torch.save({"model": create_model(cfg.model.name, 7, **cfg.model.overrides).state_dict(),
    ...             "config": cfg.to_dict()}, folder / "final.pt")
    >>> Image.new("RGB", (40, 30)).save(folder / "a.png")
    >>> from pna.inference.model import load_model
    >>> photos = PhotoSet(load_model(folder / "final.pt", device="cpu"), [str(folder / "a.png")])
    >>> len(photos), tuple(photos[0]["image"].shape), photos.classes[1]
    (1, (3, 30, 40), 'disc')
"""
from __future__ import annotations

from pathlib import Path
from typing import Sequence

import torch

from pna.inference.inputs import discover, read_rgb
from pna.inference.model import LoadedModel
from pna.inference.protocol import predict, protocol_of


class PhotoSet:
    """Images named by ``inputs`` (files, folders, globs) read for ``model``'s test protocol."""

    def __init__(self, model: LoadedModel, inputs: str | Path | Sequence[str | Path], mode: str | None = None,
                 size: int | str | None = None):
        self.images = discover([str(inputs)] if isinstance(inputs, (str, Path)) else [str(i) for i in inputs])
        self.model, self.mode, self.size = model, mode, size
        self.protocol = protocol_of(model.config, model.net, mode, size)
        self.palette, self.classes = list(model.dataset.palette), list(model.dataset.classes)
        self.ignore_index = model.dataset.ignore_index

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, index: int) -> dict:
        image = self.images[index]
        rgb, note = read_rgb(image.path)
        return {"image": self.protocol.prepare(rgb), "id": image.name, "rgb": rgb, "path": str(image.path),
                "size": rgb.shape[:2], "conversion": note}

    def predict(self, index: int, stages: str = "all") -> dict:
        """``{stage: uint8 labels}`` of image ``index`` at its own size, with the row's test protocol."""
        return predict(self.model, read_rgb(self.images[index].path)[0], stages, self.mode, self.size)

    def figure(self, index: int, labels: dict | None = None):
        """The image, every stage and the pixels each stage changed (a matplotlib Figure)."""
        from pna.inference.pictures import stage_figure

        labels = labels if labels is not None else self.predict(index)
        title = f"{self.images[index].name}: {self.model.row} ({self.model.kind}, {self.model.config.profile})"
        return stage_figure(read_rgb(self.images[index].path)[0], labels, self.palette, self.classes, title)
