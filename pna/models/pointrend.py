"""PointRend (Kirillov et al. 2020) as the paper's cascaded refinement baseline, semantic-segmentation form.

A coarse head gives P0. A point head (an MLP of 1x1 Conv1d over points) re-classifies selected
points from the fine-grained features (FPN P2, or backbone res2 for heads without an FPN) and the
coarse logits, both sampled bilinearly at each point; the coarse logits are concatenated again
before every layer. Defaults are MMSeg's (:data:`MMSEG_SUBDIVISION_POINTS` and its neighbours):

- training: 2048 points per image, 3x oversampled uniformly at random; the 75% most uncertain of
  the candidates (uncertainty = -(top1 - top2) of the coarse logits) are kept and the rest are
  uniform random points; the point loss is cross-entropy against the label at each point (nearest).
- inference: adaptive subdivision, 2 steps of "upsample x2 (bilinear), re-classify the 8196 most
  uncertain grid points"; the refined map is P1 (4x the resolution of P0).

Point coordinates are ``(x, y)`` in [0, 1] relative to the whole image (pixel centres at
``(i + 0.5) / size``), shape ``(B, N, 2)``.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .segmentor import Segmentor


def point_sample(maps: Tensor, coords: Tensor, mode: str = "bilinear") -> Tensor:
    """Values of ``maps`` (B, C, H, W) at ``coords`` (B, N, 2) in [0, 1] -> (B, C, N).

    Example:
        >>> maps = torch.arange(4.).view(1, 1, 2, 2)
        >>> point_sample(maps, torch.tensor([[[0.25, 0.25], [0.75, 0.75], [0.5, 0.5]]]))
        tensor([[[0.0000, 3.0000, 1.5000]]])
    """
    grid = (2.0 * coords - 1.0).unsqueeze(2).to(maps.dtype)  # (B, N, 1, 2) in grid_sample's [-1, 1]
    return F.grid_sample(maps, grid, mode=mode, align_corners=False).squeeze(3)


def uncertainty(logits: Tensor) -> Tensor:
    """``-(top1 - top2)`` over the class dim (dim 1): 0 where two classes tie, negative when confident."""
    if logits.shape[1] == 1:
        return -logits.abs()
    top2 = logits.topk(2, dim=1).values
    return top2[:, 1:2] - top2[:, 0:1]


@torch.no_grad()
def sample_uncertain_points(coarse: Tensor, num_points: int, oversample_ratio: float = 3.0,
                            importance_ratio: float = 0.75) -> Tensor:
    """Training points (B, N, 2): the most uncertain of ``oversample_ratio * N`` random candidates
    (``importance_ratio * N`` of them, listed first), then uniform random points.

    Example:
        >>> sample_uncertain_points(torch.randn(2, 3, 8, 8), 10).shape
        torch.Size([2, 10, 2])
    """
    if num_points < 1 or oversample_ratio < 1 or not 0 <= importance_ratio <= 1:
        raise ValueError(f"need num_points >= 1, oversample_ratio >= 1, importance_ratio in [0, 1]; got "
                         f"{num_points}, {oversample_ratio}, {importance_ratio}")
    b = coarse.shape[0]
    candidates = torch.rand(b, int(num_points * oversample_ratio), 2, device=coarse.device)
    scores = uncertainty(point_sample(coarse, candidates))[:, 0]  # (B, kN)
    num_uncertain = int(importance_ratio * num_points)
    top = scores.topk(num_uncertain, dim=1).indices
    chosen = torch.gather(candidates, 1, top.unsqueeze(-1).expand(-1, -1, 2))
    rest = torch.rand(b, num_points - num_uncertain, 2, device=coarse.device)
    return torch.cat([chosen, rest], dim=1)


@torch.no_grad()
def most_uncertain_grid_points(logits: Tensor, num_points: int) -> tuple[Tensor, Tensor]:
    """Flat indices (B, N) and centre coordinates (B, N, 2) of the N most uncertain pixels of ``logits``."""
    _, _, h, w = logits.shape
    num_points = min(num_points, h * w)
    indices = uncertainty(logits).flatten(1).topk(num_points, dim=1).indices
    x = ((indices % w).to(logits.dtype) + 0.5) / w
    y = (torch.div(indices, w, rounding_mode="floor").to(logits.dtype) + 0.5) / h
    return indices, torch.stack([x, y], dim=-1)


# MMSeg's PointRend settings (``mmsegmentation:configs/_base_/models/pointrend_r50.py:51-55`` in the
# authors' branch): 2048 training points, oversampling 3, 75% importance sampling, 2 subdivision
# steps re-classifying 8196 points each. 8196 is MMSeg's own number (Detectron2's semantic PointRend
# uses 8192, ``projects/PointRend/configs/SemanticSegmentation/Base-PointRend-Semantic-FPN.yaml:15``):
# a 0.05% difference in points, kept as MMSeg has it for every row (PointRend is a quoted baseline).
MMSEG_TRAIN_POINTS, MMSEG_OVERSAMPLE, MMSEG_IMPORTANCE = 2048, 3.0, 0.75
MMSEG_SUBDIVISION_STEPS, MMSEG_SUBDIVISION_POINTS = 2, 8196
# the point head: 3 layers of 256 (``pointrend_r50.py:37-42``: PointHead channels=256, num_fcs=3)
MMSEG_POINT_HEAD_CHANNELS, MMSEG_POINT_HEAD_FCS = 256, 3


class PointHead(nn.Module):
    """MLP over points: ``num_fcs`` Conv1d(1x1)+ReLU of width ``channels``, coarse logits concatenated
    before every layer (``coarse_each_layer``), then a Conv1d classifier.

    Example:
        >>> head = PointHead(fine_channels=8, num_classes=3, channels=16)
        >>> head(torch.zeros(2, 8, 5), torch.zeros(2, 3, 5)).shape
        torch.Size([2, 3, 5])
    """

    def __init__(self, fine_channels: int, num_classes: int, channels: int = MMSEG_POINT_HEAD_CHANNELS,
                 num_fcs: int = MMSEG_POINT_HEAD_FCS, coarse_each_layer: bool = True):
        super().__init__()
        self.coarse_each_layer = coarse_each_layer
        extra = num_classes if coarse_each_layer else 0
        widths = [fine_channels + num_classes] + [channels] * num_fcs
        self.fcs = nn.ModuleList(
            nn.Sequential(nn.Conv1d(widths[i] + (extra if i > 0 else 0), widths[i + 1], 1), nn.ReLU(inplace=True))
            for i in range(num_fcs))
        self.classifier = nn.Conv1d(widths[-1] + extra, num_classes, 1)

    def forward(self, fine: Tensor, coarse: Tensor) -> Tensor:
        x = torch.cat([fine, coarse], dim=1)
        for fc in self.fcs:
            x = fc(x)
            if self.coarse_each_layer:
                x = torch.cat([x, coarse], dim=1)
        return self.classifier(x)


@dataclass(frozen=True)
class PointRendConfig:
    """Point selection settings (MMSeg's, see the constants above)."""

    train_num_points: int = MMSEG_TRAIN_POINTS
    oversample_ratio: float = MMSEG_OVERSAMPLE
    importance_ratio: float = MMSEG_IMPORTANCE
    subdivision_steps: int = MMSEG_SUBDIVISION_STEPS
    subdivision_num_points: int = MMSEG_SUBDIVISION_POINTS
    scale_factor: int = 2  # each subdivision step doubles the resolution


class PointRend(nn.Module):
    """Point head + point selection: ``train_points`` in training, ``subdivide`` at inference.

    Example:
        >>> pr = PointRend(fine_channels=8, num_classes=3, channels=16)
        >>> fine, coarse = torch.randn(1, 8, 32, 32), torch.randn(1, 3, 8, 8)
        >>> pr.train_points(fine, coarse)["logits"].shape, pr.subdivide(fine, coarse).shape
        (torch.Size([1, 3, 2048]), torch.Size([1, 3, 32, 32]))
    """

    def __init__(self, fine_channels: int, num_classes: int, channels: int = MMSEG_POINT_HEAD_CHANNELS,
                 num_fcs: int = MMSEG_POINT_HEAD_FCS, config: PointRendConfig = PointRendConfig()):
        super().__init__()
        if config.subdivision_steps < 0 or config.scale_factor < 1:
            raise ValueError(f"subdivision_steps must be >= 0 and scale_factor >= 1, got {config}")
        self.point_head = PointHead(fine_channels, num_classes, channels, num_fcs)
        self.config = config

    def train_points(self, fine: Tensor, coarse: Tensor) -> dict[str, Tensor]:
        """``{"logits": (B, C, N), "coords": (B, N, 2)}`` at points chosen from the coarse uncertainty."""
        cfg = self.config
        coords = sample_uncertain_points(coarse.detach(), cfg.train_num_points, cfg.oversample_ratio,
                                         cfg.importance_ratio)
        logits = self.point_head(point_sample(fine, coords), point_sample(coarse, coords))
        return {"logits": logits, "coords": coords}

    def subdivide(self, fine: Tensor, coarse: Tensor) -> Tensor:
        """Adaptive subdivision: the coarse logits at ``scale_factor ** steps`` times their size."""
        cfg = self.config
        refined = coarse
        for _ in range(cfg.subdivision_steps):
            refined = F.interpolate(refined, scale_factor=cfg.scale_factor, mode="bilinear", align_corners=False)
            b, c, h, w = refined.shape
            indices, coords = most_uncertain_grid_points(refined, cfg.subdivision_num_points)
            point_logits = self.point_head(point_sample(fine, coords), point_sample(coarse, coords))
            refined = refined.reshape(b, c, h * w).scatter(
                2, indices.unsqueeze(1).expand(-1, c, -1), point_logits.to(refined.dtype)).view(b, c, h, w)
        return refined


def point_cross_entropy(points: dict[str, Tensor], labels: Tensor, ignore_index: int = 255) -> Tensor:
    """Cross-entropy of point logits against the labels (B, H, W) read at the points (nearest).

    Example:
        >>> labels = torch.tensor([[[0, 1], [1, 1]]])
        >>> points = {"logits": torch.tensor([[[9., -9.], [-9., 9.]]]), "coords": torch.tensor([[[.2, .2], [.8, .8]]])}
        >>> round(point_cross_entropy(points, labels).item(), 6)
        0.0
    """
    target = point_sample(labels.unsqueeze(1).float(), points["coords"], mode="nearest")[:, 0].long()
    if (target != ignore_index).sum() == 0:  # every point ignored: a zero that keeps the graph
        return points["logits"].sum() * 0.0
    return F.cross_entropy(points["logits"], target, ignore_index=ignore_index)


class PointRendSegmentor(Segmentor):
    """Backbone + coarse head (P0) + PointRend; training returns ``{"P0", "points", "aux"}``, eval
    (or ``return_all=True``) ``{"P0", "P1"}`` with P1 the subdivided logits.

    Fine-grained features: the head's own (``head(feats, return_features=True)``, e.g. FPN P2) when
    it has ``fine_channels``, else backbone res2.

    Example:
        >>> import warnings; warnings.simplefilter("ignore")
        >>> from pna.models import build_backbone, build_head
        >>> net = build_backbone("resnet18c")
        >>> model = PointRendSegmentor(net, build_head("aspp", net.out_channels, 3, channels=8, dilations=(1, 2)),
        ...                            PointRend(net.out_channels[0], 3, channels=16))
        >>> sorted(model.train()(torch.zeros(2, 3, 64, 64))), model.eval()(torch.zeros(1, 3, 64, 64)).shape
        (['P0', 'points'], torch.Size([1, 3, 64, 64]))
    """

    def __init__(self, backbone: nn.Module, head: nn.Module, pointrend: PointRend, aux_head: nn.Module | None = None,
                 size_divisibility: int = 1):
        super().__init__(backbone, head, None, aux_head, size_divisibility=size_divisibility)
        self.pointrend = pointrend
        self.head_gives_fine = hasattr(head, "fine_channels")

    @property
    def stage_names(self) -> list[str]:
        return ["P0", "P1"]

    def predict_all(self, images: Tensor) -> dict[str, Tensor]:
        feats = self.backbone(images)
        if self.head_gives_fine:
            coarse, fine = self.head(feats, return_features=True)
        else:
            coarse, fine = self.head(feats), feats[0]
        outputs: dict = {"P0": coarse}
        if self.training:
            outputs["points"] = self.pointrend.train_points(fine, coarse)
            if self.aux_head is not None:
                outputs["aux"] = self.aux_head(feats)
        else:
            outputs["P1"] = self.pointrend.subdivide(fine, coarse)
        return outputs

    def attention_maps(self, images: Tensor) -> dict[str, Tensor]:
        raise ValueError("a PointRend model has no NAM attention maps")


def fine_channels_of(head: nn.Module, backbone_channels: list[int]) -> int:
    """Width of the fine-grained features PointRendSegmentor will sample for this head."""
    return int(getattr(head, "fine_channels", backbone_channels[0]))
