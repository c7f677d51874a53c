"""Convert an official dataset download into the layout the loaders read (``data_prep/``).

    pna prepare voc_aug --voc-root data/VOCdevkit/VOC2012 --sbd-root data/benchmark_RELEASE/dataset
    pna prepare cityscapes --root data/cityscapes
    pna prepare voc_aug --help          # that converter's options

The converters and what each expects are described in ``data_prep/README.md``.
"""
from __future__ import annotations

import argparse

HELP = "convert an official dataset download (data_prep/)"
CONVERTERS = ("voc_aug", "cityscapes", "cocostuff10k", "deepglobe", "trans10k", "synthetic")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("dataset", choices=CONVERTERS)
    parser.add_argument("options", nargs=argparse.REMAINDER, help="the converter's own options (see its --help)")


def run(args: argparse.Namespace) -> int:
    from importlib import import_module

    status = import_module(f"data_prep.{args.dataset}").main(args.options)
    return status if isinstance(status, int) else 0
