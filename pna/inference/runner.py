"""The batch runner behind ``pna predict``: many images, one model, files out.

Images are read by data-loader workers (:class:`pna.inference.inputs.ImageFiles`), so reading and
resizing the next images overlaps the model's work on the current ones; consecutive images of the
same prepared size are stacked into one forward pass (up to ``batch_size``). An image that cannot
be read is one line on stderr (the file and the cause) and the run goes on; the summary
(``predictions.json``) and the return value count the failures. Every output path is checked before
the first image is read (:func:`pna.inference.writing.check_free`).

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
    >>> (folder / "b.png").write_bytes(b"not an image")  # doctest: +ELLIPSIS
    12
    >>> from pna.inference.model import load_model
    >>> summary = predict_files(load_model(folder / "final.pt", device="cpu"), [str(folder / "a.png"),
    ...                         str(folder / "b.png")], folder / "out", PredictOptions(progress=False))
    >>> summary["written"], summary["failed"], sorted(p.name for p in (folder / "out" / "labels").iterdir())
    (1, 1, ['a_P4.png'])
    >>> summary["failures"][0]["error"].split(": ", 1)[1][:45]  # also printed on stderr
    'cannot read image: cannot identify image file'

"""
from __future__ import annotations

import sys
import time
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
from torch.utils.data import DataLoader

from pna.inference.encodings import FORMATS, check_formats, encode, palette_png
from pna.inference.inputs import ImageFiles, as_list, discover
from pna.inference.model import LoadedModel
from pna.inference.pictures import overlay, stage_figure
from pna.inference.protocol import protocol_of, stage_labels, stage_names_of
from pna.inference.writing import OutputPlan, check_free, save_figure, save_image, save_json


@dataclass
class PredictOptions:
    """What ``pna predict`` writes and how it runs (the CLI's options)."""

    stages: str | Sequence[str] = "final"   # "final", "all", or names such as "P0,P4"
    mode: str | None = None                 # whole | slide; None: the row's
    size: int | str | None = None           # test short side, "original"; None: the row's
    overlay: bool = False
    formats: Sequence[str] = field(default_factory=tuple)
    figure: bool = False                    # computes every stage for the figure
    batch_size: int = 1
    workers: int = 0
    overwrite: bool = False
    progress: bool = True


def _same_size_runs(items: list[dict], batch_size: int) -> list[list[dict]]:
    """Consecutive items whose prepared images have one shape, at most ``batch_size`` per run."""
    runs: list[list[dict]] = []
    for item in items:
        if runs and len(runs[-1]) < batch_size and runs[-1][-1]["image"].shape == item["image"].shape:
            runs[-1].append(item)
        else:
            runs.append([item])
    return runs


class _Writer:
    """Writes one image's outputs from its stage labels; records what it wrote."""

    def __init__(self, model: LoadedModel, plan: OutputPlan):
        self.model, self.plan = model, plan
        self.palette, self.classes = list(model.dataset.palette), list(model.dataset.classes)
        self.final = model.stage_names[-1]

    def write(self, item: dict, labels: dict[str, torch.Tensor]) -> list[str]:
        arrays = {name: value.numpy().astype(np.uint8) for name, value in labels.items()}
        written = []
        for kind, path in self.plan.paths(item["name"]).items():
            if kind.startswith("labels:"):
                save_image(palette_png(arrays[kind.split(":", 1)[1]], self.palette), path)
            elif kind == "overlay":
                save_image(overlay(item["rgb"], arrays[self.final], self.palette, self.classes), path)
            elif kind.startswith("format:"):
                save_image(encode(kind.split(":", 1)[1], arrays[self.final]), path)
            elif kind == "figure":
                title = f"{item['name']}: {self.model.row} ({self.model.kind}, {self.model.config.profile})"
                save_figure(stage_figure(item["rgb"], arrays, self.palette, self.classes, title), path)
            written.append(path.relative_to(self.plan.out).as_posix())
        return written


def _name_notes(names: Sequence[str], formats: Sequence[str]) -> list[str]:
    notes = []
    for fmt in (FORMATS[f] for f in formats):
        odd = [n for n in names if fmt.file_name is not None and not fmt.file_name.search(Path(n).name)]
        if odd:
            notes.append(f"{len(odd)} name(s) (e.g. {odd[0]!r}) hold no {fmt.name_hint}: format {fmt.name!r}")
    return notes


def predict_files(model: LoadedModel, inputs: Sequence[str], out: str | Path, options: PredictOptions) -> dict:
    """Predict every image ``inputs`` name (files, folders, globs) and write the outputs under ``out``.
    Returns the summary written to ``out/predictions.json`` (``written``, ``failed``, per image)."""
    if options.batch_size < 1 or options.workers < 0:
        raise ValueError(f"batch size must be >= 1 and workers >= 0, got {options.batch_size} and {options.workers}")
    images = discover(inputs)
    protocol = protocol_of(model.config, model.net, options.mode, options.size)
    stages = stage_names_of(model.net, options.stages)
    computed = model.stage_names if options.figure else sorted(set(stages) | {model.stage_names[-1]},
                                                                 key=model.stage_names.index)
    formats = [f.name for f in check_formats(list(options.formats), model.dataset)]
    plan = OutputPlan(Path(out), stages, options.overlay, formats, options.figure)
    check_free(plan, [image.name for image in images], options.overwrite)
    for note in _name_notes([image.name for image in images], formats):
        print(f"predict: note: {note}", flush=True)

    files = ImageFiles(images, protocol.prepare, keep_rgb=options.overlay or options.figure)
    loader = DataLoader(files, batch_size=options.batch_size, num_workers=options.workers, collate_fn=as_list)
    writer, records, failures, notes = _Writer(model, plan), [], [], Counter()
    seconds = Counter()
    start = time.perf_counter()
    from pna.engine.progress import Progress

    with Progress(len(images), "predict", enabled=options.progress) as bar:
        for items in loader:
            for item in (i for i in items if i["error"]):
                print(f"predict: {item['error']}", file=sys.stderr, flush=True)
                failures.append({"input": item["path"], "error": item["error"]})
                bar.update()
            for run in _same_size_runs([i for i in items if not i["error"]], options.batch_size):
                tick = time.perf_counter()
                labels = stage_labels(model.net, torch.stack([i["image"] for i in run]), [i["size"] for i in run],
                                      protocol, computed)
                share = (time.perf_counter() - tick) / len(run)
                for item, maps in zip(run, labels):
                    if item["note"] and item["note"] not in notes:
                        print(f"predict: note: {item['note']}", flush=True)
                    notes[item["note"]] += 1
                    tick = time.perf_counter()
                    outputs = writer.write(item, maps)
                    timing = {"read": item["read_s"], "predict": share, "write": time.perf_counter() - tick}
                    seconds.update(timing)
                    records.append({"name": item["name"], "input": item["path"], "size": list(item["size"]),
                                    "processed_size": list(item["image"].shape[-2:]), "conversion": item["note"],
                                    "seconds": {k: round(v, 4) for k, v in timing.items()}, "outputs": outputs})
                bar.update(len(run))
    summary = {"model": model.describe(), "protocol": {**protocol.to_dict(), "text": protocol.describe()},
               "options": {**asdict(options), "formats": formats, "stages": stages},
               "written": len(records), "failed": len(failures),
               "conversions": {note: count for note, count in notes.items() if note},
               "seconds": {"wall": round(time.perf_counter() - start, 3), **{k: round(v, 3) for k, v in seconds.items()}},
               "images": records, "failures": failures}
    save_json(summary, plan.summary)
    return summary
