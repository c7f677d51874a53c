"""Predict on your own images with a model of ours or the authors', and write label maps, overlays,
the stage figure and test-server files.

    pna predict --checkpoint runs/<run>/final.pt photo.jpg --out predictions/ --overlay
    pna predict --authors-checkpoint model_final.pth --config cityscapes/fpn_r52_pna \\
                leftImg8bit/test --out cityscapes_test --format cityscapes --device cuda
    pna predict --checkpoint final.pt 'photos/**/*.jpg' --out out --stages all --figure

INPUT: image files, folders (searched recursively) and glob patterns (quote them); JPEG, PNG, WebP,
TIFF, BMP. The EXIF orientation is applied; grayscale, palette, RGBA and CMYK images become RGB
and 16-bit images keep their high byte (value // 256), each conversion said once; float images
are refused. Each image is run with the row's test protocol (its test resize, whole image or
sliding windows, padding to the model's size divisor), the same code as `pna evaluate`, unless
--mode / --size say otherwise; labels are at the image's own size.

Outputs under --out, per image NAME (its path below an input folder, or its stem):
labels/NAME_<stage>.png (palette PNG: pixel value = class id, the dataset's colours), with
--overlay overlay/NAME.jpg (image + colours + class legend), with --format F F/NAME.png (the final
stage for a test server: cityscapes = labelIds, voc = palette PNG, cocostuff = COCO-Stuff ids 1..182,
deepglobe / trans10k = RGB colour masks), with --figure figures/NAME.png (image, P0..P4 and the
pixels each stage changed), and predictions.json (model, row, checkpoint SHA-256, protocol,
per-image size and seconds, failures). Existing outputs are never replaced without --overwrite.
An unreadable image is one line on stderr and the run goes on; the exit status is 1 when any
image failed.
"""
from __future__ import annotations

import argparse

from pna.cli.train import add_trust_file

HELP = "label maps, overlays, stage figures and test-server files for your own images"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from pna.configs.schema import default_workers

    parser.add_argument("inputs", nargs="+", metavar="INPUT", help="image files, folders, glob patterns")
    parser.add_argument("--out", required=True, metavar="DIR", help="output folder")
    parser.add_argument("--checkpoint", metavar="FILE", help="a final.pt or last.pt written by `pna train`")
    parser.add_argument("--authors-checkpoint", metavar="FILE",
                        help="a trained model the authors released (MMSeg or Detectron2 file); needs --config")
    parser.add_argument("--config", metavar="ROW", help="with --authors-checkpoint: the row the file is "
                        "(paper profile, e.g. cityscapes/fpn_r52_pna)")
    parser.add_argument("--stages", default="final", help="label maps of: final (default), all, or names "
                        "such as P0,P4")
    parser.add_argument("--mode", choices=["whole", "slide"], help="default: the row's test mode")
    parser.add_argument("--size", help="test short side in pixels, or 'original' (default: the row's)")
    parser.add_argument("--overlay", action="store_true", help="also write the image blended with the colours")
    parser.add_argument("--format", action="append", default=[], dest="formats", metavar="NAME",
                        choices=["cityscapes", "voc", "cocostuff", "deepglobe", "trans10k"],
                        help="also write the final stage in a test server's format (repeatable)")
    parser.add_argument("--figure", action="store_true", help="also write one figure per image: the image, every "
                        "stage and the pixels each stage changed (computes every stage)")
    parser.add_argument("--batch-size", type=int, default=1, help="images per forward pass (same-size images)")
    parser.add_argument("--workers", type=int, default=default_workers(2), help="image-reading processes")
    parser.add_argument("--device", default="auto", help="auto (CUDA when available), cpu or cuda")
    parser.add_argument("--overwrite", action="store_true", help="replace outputs that exist already")
    add_trust_file(parser)


def run(args: argparse.Namespace) -> int:
    from pna.files import trusting
    from pna.inference import PredictOptions, load_model, predict_files

    if (args.checkpoint is None) == (args.authors_checkpoint is None):
        raise ValueError("pass one of --checkpoint or --authors-checkpoint")
    if args.authors_checkpoint and not args.config:
        raise ValueError("--authors-checkpoint needs --config ROW (one of pna.configs.list_configs())")
    if args.checkpoint and args.config:
        raise ValueError("--config goes with --authors-checkpoint; a checkpoint of ours carries its own config")
    options = PredictOptions(stages=args.stages, mode=args.mode, size=args.size, overlay=args.overlay,
                             formats=args.formats, figure=args.figure, batch_size=args.batch_size,
                             workers=args.workers, overwrite=args.overwrite)
    with trusting(args.trust_file):
        model = load_model(args.checkpoint or args.authors_checkpoint, args.config, args.device)
    for note in model.notes:
        print(note, flush=True)
    summary = predict_files(model, args.inputs, args.out, options)
    print(f"{summary['written']} image(s) written to {args.out}, {summary['failed']} failed "
          f"({model.row}, {summary['protocol']['text']}); summary: {args.out}/predictions.json", flush=True)
    return 1 if summary["failed"] else 0
