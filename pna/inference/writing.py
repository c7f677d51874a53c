"""Where each image's outputs go, the check that none would overwrite a file, and the atomic writes.

Under the output folder, per image named ``NAME`` (its path below the input folder, no suffix)::

    labels/NAME_<stage>.png   the label map of each stage asked for (palette PNG: train ids, dataset colours)
    overlay/NAME.jpg          the image blended with the colours, with a class legend   (--overlay)
    <format>/NAME.png         a test server's format of the final stage                 (--format)
    figures/NAME.png          image, P0..P4 and the pixels each stage changed           (--figure)
    predictions.json          the summary of the run

Every path is known before the first image is read: an existing one stops the run with one line
(unless ``overwrite``), so nothing a user made is replaced by surprise. Files are written to a
temporary name in the same folder and renamed, so an interrupted run leaves no half-written file.

Example::

    >>> plan = OutputPlan(Path("out"), stages=["P4"], overlay=True, formats=["cityscapes"], figure=False)
    >>> [p.as_posix() for p in plan.paths("city/a_000001_000019_leftImg8bit").values()]
    ['out/labels/city/a_000001_000019_leftImg8bit_P4.png', 'out/overlay/city/a_000001_000019_leftImg8bit.jpg', 'out/cityscapes/city/a_000001_000019_leftImg8bit.png']
"""
from __future__ import annotations

import json
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

OVERLAY_QUALITY = 90    # JPEG quality of the overlays (photographs; PNG would be several times larger)
SUMMARY = "predictions.json"


@dataclass(frozen=True)
class OutputPlan:
    """Which files one image gets (see the module docstring)."""

    out: Path
    stages: Sequence[str]
    overlay: bool
    formats: Sequence[str]
    figure: bool

    def paths(self, name: str) -> dict[str, Path]:
        """``{kind: path}``: kinds ``labels:<stage>``, ``overlay``, ``format:<name>``, ``figure``."""
        found = {f"labels:{stage}": self.out / "labels" / f"{name}_{stage}.png" for stage in self.stages}
        if self.overlay:
            found["overlay"] = self.out / "overlay" / f"{name}.jpg"
        for fmt in self.formats:
            found[f"format:{fmt}"] = self.out / fmt / f"{name}.png"
        if self.figure:
            found["figure"] = self.out / "figures" / f"{name}.png"
        return found

    @property
    def summary(self) -> Path:
        return self.out / SUMMARY


def check_free(plan: OutputPlan, names: Sequence[str], overwrite: bool) -> None:
    """A one-line error when any output of ``names`` (or the summary) exists and ``overwrite`` is off."""
    if overwrite:
        return
    taken = [p for name in names for p in plan.paths(name).values() if p.exists()]
    taken += [plan.summary] if plan.summary.exists() else []
    if taken:
        more = f" and {len(taken) - 1} more" if len(taken) > 1 else ""
        raise FileExistsError(f"{taken[0]}{more} exist(s) already: pass --overwrite (overwrite=True) to replace them, "
                              "or another --out folder")


def _atomic(path: Path, write) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(handle)
    try:
        write(temporary)
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def save_image(image, path: Path) -> None:
    """A PIL image, atomically; JPEG for ``.jpg`` (quality ``OVERLAY_QUALITY``), else PNG."""
    fmt = "JPEG" if path.suffix.lower() in (".jpg", ".jpeg") else "PNG"
    options = {"quality": OVERLAY_QUALITY} if fmt == "JPEG" else {}
    _atomic(path, lambda target: image.save(target, format=fmt, **options))


def save_figure(fig, path: Path) -> None:
    _atomic(path, lambda target: fig.savefig(target, format="png"))


def save_json(data: Any, path: Path) -> None:
    _atomic(path, lambda target: Path(target).write_text(json.dumps(data, indent=1) + "\n"))
