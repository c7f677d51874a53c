"""PNA: Progressive Neighborhood Aggregation for semantic segmentation refinement.

The public API, loaded on first use so that ``import pna.paths`` stays light::

    >>> import pna
    >>> sorted(pna.__all__)
    ['build_dataset', 'create_model', 'evaluate_model', 'list_configs', 'load_config', 'load_model', 'predict']

The package is a house of rooms, each importing only from those below it::

    cli/        the command line, `pna <command>` (thin entry points over the rooms below)
    tools/      rehearsal of the paper profile, reproduce (every notebook), the fidelity report
    analysis/   what the notebooks call: running rows, claims, tables beside the paper, the
                thin-part oracle, figures, the NAM explorer, cost (params / GFLOPs / FPS)
    inference/  predicting on a user's own images with any model (`pna predict`, load_model, predict)
    engine/     the training loop, evaluation, building from a config, optimiser, loader,
                checkpoints, distributed, run folders, metrics, progress, result records
    authors/    the authors' released checkpoints into our models
    configs/    the row table, the authors' settings, the smoke and paper profiles
    data/       datasets, transforms, the synthetic set
    models/     backbones, heads, NAM / SAM refinement, segmentor, losses, the registry
    ops/        neighbourhood attention
    files/      reading weight and checkpoint files without running code stored in them
    errors.py, paths.py: user-facing errors and where results/ and runs/ live (used by every room)

Training is ``pna.engine.train.train(config)``; the map with more detail is in README.md.
"""
from importlib import import_module

__version__ = "0.1.0"

_EXPORTS = {
    "create_model": "pna.models",
    "build_dataset": "pna.data",
    "load_config": "pna.configs",
    "list_configs": "pna.configs",
    "evaluate_model": "pna.engine.evaluate",
    "load_model": "pna.inference",   # a model ready to predict: our final.pt, or the authors' file as a row
    "predict": "pna.inference",      # {stage: labels} of one image, as `pna evaluate` computes them
}
__all__ = list(_EXPORTS)


def __getattr__(name: str):
    if name in _EXPORTS:
        return getattr(import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'pna' has no attribute {name!r}")
