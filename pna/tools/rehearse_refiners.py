"""The rehearsal's refiners (:mod:`pna.tools.rehearse`): SegFix's rows (:mod:`pna.configs.refiners`)
rehearse like every paper row, on their dataset's fixture at their recipe's crop; DenseCRF, which
trains nothing, gets one line of its own: the mean field of one Cityscapes-size image (1024 x 2048,
19 classes, DeepLab v2's parameters) on the CPU, its seconds in ``eval_s`` and the process's peak
memory in ``peak_mb``.

Example::

    >>> dataset_of("cityscapes/segfix_hrnet48"), per_gpu_batch("cityscapes/segfix_hrnet48"), is_refiner("voc/fcn_r50_os32")
    ('cityscapes', 4, False)
"""
from __future__ import annotations

import time
import traceback

from pna.configs import ROWS
from pna.configs.refiners import REFINER_ROWS, SEGFIX_RECIPE

CRF_SIZE, CRF_CLASSES = (1024, 2048), 19  # a Cityscapes image at its test size, its 19 classes
DENSECRF_LINE = "densecrf cityscapes 1024x2048 (19 classes)"


def is_refiner(name: str) -> bool:
    return name in REFINER_ROWS


def dataset_of(name: str) -> str:
    """The dataset of a paper row or a refiner row."""
    return REFINER_ROWS[name].dataset if is_refiner(name) else ROWS[name].dataset


def per_gpu_batch(name: str) -> int:
    """Images per GPU: the authors' setting of a paper row; a refiner's recipe's batch over its GPUs."""
    if is_refiner(name):
        return SEGFIX_RECIPE.batch_size // SEGFIX_RECIPE.gpus
    from pna.configs.authors import AUTHORS

    return AUTHORS[ROWS[name].setting].batch_per_gpu


def densecrf_line(device: str) -> dict:
    """DenseCRF on one random Cityscapes-size prediction (always on the CPU: Krähenbühl's C++)."""
    import numpy as np
    import torch

    from pna.refiners import crf_refine
    from pna.tools.measure import PeakMemory

    line = {"config": DENSECRF_LINE, "device": "cpu", "eval_size": "x".join(map(str, CRF_SIZE)), "status": "failed",
            "error": ""}
    meter, start = PeakMemory(torch.device("cpu")), time.perf_counter()
    meter.reset()
    try:
        generator = torch.Generator().manual_seed(0)
        logits = torch.randn(1, CRF_CLASSES, *CRF_SIZE, generator=generator)
        image = np.random.default_rng(0).integers(0, 256, (1, *CRF_SIZE, 3), dtype=np.uint8)
        crf_start = time.perf_counter()
        labels = crf_refine(image, logits)
        line["eval_s"] = round(time.perf_counter() - crf_start, 2)
        assert tuple(labels.shape) == (1, *CRF_SIZE), f"DenseCRF returned {tuple(labels.shape)}"
        line["status"] = "ok"
    except Exception as err:  # noqa: BLE001: the failure is the result
        line["error"] = f"{type(err).__name__}: {err}"[:500]
        traceback.print_exc()
    line["peak_mb"] = round(meter.read()[0])
    line["row_s"] = round(time.perf_counter() - start, 1)
    print(f"{DENSECRF_LINE}: {line['status']} {line.get('eval_s', '')} s, peak {line['peak_mb']} MB {line['error']}",
          flush=True)
    return line
