"""Predicting on a user's own images with any model, ours or the authors' (``pna predict``).

The room: :mod:`.inputs` (which files, reading: EXIF orientation, mode conversions, 16-bit),
:mod:`.model` (:func:`load_model`: our ``final.pt`` or the authors' released file as a row),
:mod:`.protocol` (the row's test protocol through the evaluation's own code; :func:`predict`),
:mod:`.encodings` (palette PNGs, the test servers' formats), :mod:`.pictures` (overlay, stage
figure), :mod:`.writing` (output paths, no overwriting, atomic writes), :mod:`.runner` (the batch
runner: loader workers, progress, per-image errors, ``predictions.json``) and :mod:`.photos` (images
as a small dataset for the explorer and the walkthrough). It sits above ``engine/`` (whose
evaluation code it reuses) and below ``analysis/``.

``pna.load_model`` and ``pna.predict`` are :func:`load_model` and :func:`predict`::

    model = pna.load_model("runs/<run>/final.pt")                         # ours
    model = pna.load_model("model_final.pth", row="cityscapes/fpn_r52_pna")  # the authors'
    labels = pna.predict(model, "street.jpg", stages="all")              # {"P0": HxW uint8, ..., "P4": ...}
"""
from pna.inference.encodings import FORMATS, encode, palette_png
from pna.inference.inputs import discover, read_rgb
from pna.inference.model import LoadedModel, load_model
from pna.inference.photos import PhotoSet
from pna.inference.protocol import Protocol, predict, protocol_of
from pna.inference.runner import PredictOptions, predict_files

__all__ = ["FORMATS", "LoadedModel", "PhotoSet", "PredictOptions", "Protocol", "discover", "encode", "load_model",
           "palette_png", "predict", "predict_files", "protocol_of", "read_rgb"]
