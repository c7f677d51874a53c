"""Per-stage evaluation: confusion-matrix mIoU of every prediction P0..P4 over a split.

``python -m pna.evaluate --checkpoint runs/<run>/final.pt [--split val] [--mode whole|slide]``
rebuilds the model and the dataset from the config stored in the checkpoint.
``python -m pna.evaluate --authors-checkpoint FILE --config cityscapes/fpn_r52_pna --root DATA``
evaluates a model the authors released, as that row (paper profile; :mod:`pna.authors`).

Example::

    >>> import torch
    >>> class Two(torch.nn.Module):   # a "model" with two stages that predicts class 1 everywhere
    ...     stage_names = ["P0", "P1"]
    ...     def forward(self, x, return_all=False):
    ...         logits = torch.zeros(x.shape[0], 2, 4, 4); logits[:, 1] = 1
    ...         return {"P0": logits, "P1": logits}
    >>> out = predict_stages(Two(), torch.zeros(1, 3, 8, 8))
    >>> {k: tuple(v.shape) for k, v in out.items()}
    {'P0': (1, 2, 8, 8), 'P1': (1, 2, 8, 8)}
"""
from __future__ import annotations

import argparse
import sys
from typing import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from pna import distributed as dist
from pna.loader import eval_loader
from pna.metrics import ConfusionMatrix
from pna.models.segmentor import predict_at_input_size
from pna.progress import track


def _unwrap(model: nn.Module) -> nn.Module:
    return model.module if isinstance(model, nn.parallel.DistributedDataParallel) else model


def _resize(logits: Tensor, size: Sequence[int]) -> Tensor:
    if tuple(logits.shape[-2:]) == tuple(size):
        return logits
    return F.interpolate(logits, size=tuple(size), mode="bilinear", align_corners=False)


def _stage_outputs(model: nn.Module, images: Tensor, stages: Sequence[str]) -> dict[str, Tensor]:
    # padding for backbones that need it (Swin: multiples of 32) happens there, cropped back
    return {name: logits.float() for name, logits in predict_at_input_size(model, images, stages).items()}


@torch.no_grad()
def predict_stages(model: nn.Module, images: Tensor, mode: str = "whole",
                   crop: Sequence[int] = (512, 512), stride: Sequence[int] = (341, 341),
                   stages: Sequence[str] | None = None) -> dict[str, Tensor]:
    """Logits of each stage at the image size; ``mode="slide"`` averages overlapping windows.

    Windows are `crop` (h, w) every `stride`; the last row/column of windows is aligned with the
    border, and an image smaller than `crop` is zero-padded to it (the padding is cropped away).
    """
    stages = list(stages or _unwrap(model).stage_names)
    if mode == "whole":
        return _stage_outputs(model, images, stages)
    if mode != "slide":
        raise ValueError(f"mode must be 'whole' or 'slide', got {mode!r}")
    (ch, cw), (sh, sw) = crop, stride
    if min(ch, cw, sh, sw) < 1:
        raise ValueError(f"slide crop {crop} and stride {stride} must be positive")
    b, _, h, w = images.shape
    padded = F.pad(images, (0, max(cw - w, 0), 0, max(ch - h, 0)))
    ph, pw = padded.shape[-2:]
    tops = list(range(0, max(ph - ch, 0) + 1, sh))
    lefts = list(range(0, max(pw - cw, 0) + 1, sw))
    tops += [ph - ch] if tops[-1] != ph - ch else []
    lefts += [pw - cw] if lefts[-1] != pw - cw else []
    sums: dict[str, Tensor] = {}
    count = images.new_zeros(1, 1, ph, pw)
    for top in tops:
        for left in lefts:
            window = padded[..., top:top + ch, left:left + cw]
            for name, logits in _stage_outputs(model, window, stages).items():
                if name not in sums:
                    sums[name] = images.new_zeros(b, logits.shape[1], ph, pw)
                sums[name][..., top:top + ch, left:left + cw] += logits
            count[..., top:top + ch, left:left + cw] += 1
    return {name: (total / count)[..., :h, :w] for name, total in sums.items()}


@torch.no_grad()
def evaluate_model(model: nn.Module, dataset, device: torch.device | str = "cpu", mode: str = "whole",
                   crop: Sequence[int] = (512, 512), stride: Sequence[int] = (341, 341),
                   all_stages: bool = True, batch_size: int = 1, workers: int = 0,
                   progress: bool = False) -> dict:
    """mIoU of each stage of `model` over `dataset` (sharded and reduced across DDP ranks).

    Returns ``{"stages": {"P0": {"mIoU", "pixel_accuracy", "per_class_iou"}, ...},
    "final_stage": "P4", "mIoU": <final stage mIoU>, "num_images": n}``; mIoU is a fraction.
    """
    net = _unwrap(model)
    was_training = net.training
    net.eval()
    names = list(net.stage_names) if all_stages else [net.stage_names[-1]]
    matrices = {n: ConfusionMatrix(dataset.num_classes, dataset.ignore_index, dataset.eval_classes, device)
                for n in names}
    loader = eval_loader(dataset, batch_size, workers, dist.world_size(), dist.rank())
    for batch in track(loader, "eval", enabled=progress and dist.is_main()):
        images, labels = batch["image"], batch["label"]
        pairs = zip(images, labels) if isinstance(images, list) else [(images, labels)]
        for image, label in pairs:
            image = image.to(device).reshape(-1, *image.shape[-3:])
            label = label.to(device).reshape(-1, *label.shape[-2:])
            for name, logits in predict_stages(net, image, mode, crop, stride, names).items():
                matrices[name].update(_resize(logits, label.shape[-2:]).argmax(1), label)
    num_images = torch.tensor([len(loader.dataset)], device=device)
    if dist.is_initialized():
        torch.distributed.all_reduce(num_images)
    net.train(was_training)
    stages = {n: m.reduce_().summary(list(dataset.classes)) for n, m in matrices.items()}
    return {"stages": stages, "final_stage": names[-1], "mIoU": stages[names[-1]]["mIoU"],
            "num_images": int(num_images)}


def main(argv: list[str] | None = None) -> int:
    from pna.build import build_eval_set, model_from_checkpoint
    from pna.checkpoint import load_checkpoint
    from pna.configs import apply_overrides, config_from_dict

    parser = argparse.ArgumentParser(description="Per-stage mIoU of a trained checkpoint.")
    parser.add_argument("--checkpoint", help="a final.pt or last.pt written by pna.train")
    parser.add_argument("--authors-checkpoint", metavar="FILE",
                        help="a trained model the authors released (MMSeg or Detectron2 file); needs --config")
    parser.add_argument("--config", metavar="NAME", help="with --authors-checkpoint: the row it is evaluated as "
                        "(paper profile), e.g. cityscapes/fpn_r52_pna")
    parser.add_argument("--split", help="evaluation split (default: the config's data.eval_split)")
    parser.add_argument("--mode", choices=["whole", "slide"], help="default: the config's eval.mode")
    parser.add_argument("--root", help="dataset folder (default: the config's data.root)")
    parser.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE", help="config overrides (eval.*)")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--output", help="also write the metrics as JSON here")
    args = parser.parse_args(argv)
    if (args.checkpoint is None) == (args.authors_checkpoint is None):
        parser.error("pass one of --checkpoint or --authors-checkpoint")
    if args.authors_checkpoint and not args.config:
        parser.error("--authors-checkpoint needs --config NAME (one of pna.configs.list_configs())")

    if args.authors_checkpoint:
        from pna.configs import load_config

        checkpoint, cfg = None, load_config(args.config, "paper", args.set)
    else:
        checkpoint = load_checkpoint(args.checkpoint)
        cfg = apply_overrides(config_from_dict(checkpoint["config"]), args.set)
    extra = {"data.eval_split": args.split, "eval.mode": args.mode, "data.root": args.root}
    cfg = apply_overrides(cfg, {k: v for k, v in extra.items() if v is not None})
    device = dist.init_from_env(args.device)
    dataset = build_eval_set(cfg)
    if checkpoint is None:
        from pna.authors import load_authors_model

        model, report = load_authors_model(args.authors_checkpoint, args.config)
        if dist.is_main():
            print(report.summary(), flush=True)
        model = model.to(device)
    else:
        model = model_from_checkpoint(checkpoint, dataset.num_classes).to(device)
    metrics = evaluate_model(model, dataset, device, cfg.eval.mode, cfg.eval.crop, cfg.eval.stride,
                             batch_size=cfg.eval.batch_size, progress=True)
    if dist.is_main():
        print(f"{cfg.data.eval_dataset or cfg.data.dataset} {cfg.data.eval_split} ({metrics['num_images']} images, "
              f"{cfg.eval.mode}):")
        for name, stage in metrics["stages"].items():
            print(f"  {name}: mIoU {100 * stage['mIoU']:.2f}")
        if args.output:
            from pna.checkpoint import atomic_write_json
            atomic_write_json({"checkpoint": str(args.checkpoint or args.authors_checkpoint),
                               "split": cfg.data.eval_split, "mode": cfg.eval.mode, **metrics}, args.output)
    dist.cleanup()
    return 0


if __name__ == "__main__":
    from pna.cli import run

    sys.exit(run(main))  # errors as one line; --debug shows the traceback
