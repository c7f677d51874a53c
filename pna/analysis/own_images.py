"""The walkthrough (notebook 00) and the explorer on a model and image of the user's choosing.

Notebook 00's parameters ``image`` (a photo: file, folder or glob), ``checkpoint`` (a ``final.pt``
of ours) and ``authors_checkpoint`` (the authors' released file of the notebook's row) replace the
trained smoke row and the synthetic validation set; all None (the default) keeps both, so that
``make reproduce`` needs nothing. A photo has no label: the query pixel is the one given or the
centre, and the figures that compare with a label are skipped.

Example::

    >>> row_config("table1", "fcn_r50_os32_pna")
    'voc/fcn_r50_os32_pna'
"""
from __future__ import annotations

from pathlib import Path

import torch


def row_config(table: str, row: str) -> str:
    """The config name (``"voc/fcn_r50_os32_pna"``) of ``row`` in ``table``."""
    from pna.configs import ROWS

    names = [name for name, r in ROWS.items() if r.table == table and r.name == row]
    if not names:
        raise ValueError(f"{table} has no row {row!r}")
    return names[0]


def first_row(rows) -> str:
    """The first of the notebooks' ``rows`` parameter (a list, one name, or ``"a,b"``)."""
    if isinstance(rows, (list, tuple)) and rows:
        return str(rows[0])
    if isinstance(rows, str) and rows.strip():
        return rows.split(",")[0].strip()
    raise ValueError(f"rows must name the row the checkpoint is (e.g. ['fcn_r50_os32_pna']), got {rows!r}")


def walkthrough_inputs(runs=None, image: str | None = None, checkpoint: str | None = None,
                       authors_checkpoint: str | None = None, rows=None, table: str = "table1",
                       data_root: str | None = None, device: str = "cpu") -> tuple[torch.nn.Module, object]:
    """(model in eval mode, dataset) for the walkthrough.

    Default: the first trained run of ``runs`` and its validation set. ``checkpoint`` /
    ``authors_checkpoint`` (the latter loaded as the first of ``rows`` in ``table``) replace the
    model; ``image`` replaces the dataset by the photos it names (:class:`pna.inference.PhotoSet`),
    else the model's own validation set is read (``data_root`` for a paper row).
    """
    from pna.analysis.experiments import load_trained
    from pna.inference import PhotoSet, load_model

    if checkpoint is not None and authors_checkpoint is not None:
        raise ValueError("pass checkpoint or authors_checkpoint, not both")
    if checkpoint is None and authors_checkpoint is None:
        run = runs[next(iter(runs))]
        if image is None:
            return load_trained(run, device)
        loaded = load_model(Path(run.run_dir) / "final.pt", device=device)
    elif checkpoint is not None:
        loaded = load_model(checkpoint, device=device)
    else:
        loaded = load_model(authors_checkpoint, row=row_config(table, first_row(rows)), device=device)
    if image is not None:
        return loaded.net, PhotoSet(loaded, image)
    from pna.configs import apply_overrides
    from pna.engine.build import build_eval_set

    cfg = loaded.config if data_root is None else apply_overrides(loaded.config, {"data.root": str(data_root)})
    return loaded.net, build_eval_set(cfg)


def photo_query(dataset, sample_index: int | None, pixel) -> tuple[int, tuple[int, int], None]:
    """(image index, query pixel, None) on a photo without label: ``pixel`` or the image's centre."""
    from pna.analysis.thin import walkthrough_query

    index = 0 if sample_index is None else int(sample_index)
    if pixel is not None:
        return walkthrough_query(dataset, index, pixel)
    height, width = dataset[index]["image"].shape[-2:]
    return index, (height // 2, width // 2), None
