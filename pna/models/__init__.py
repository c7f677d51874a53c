"""Models: backbones, coarse heads, NAM/SAM refinement, the Segmentor, its loss and the factory.

    create_model(name, num_classes, **overrides) -> Segmentor     (names: list_models())
"""
from .backbones import build_backbone, list_backbones
from .heads import build_head
from .losses import SegmentationLoss
from .nam import NeighbourhoodAggregation
from .refine import ProgressiveRefinement, RefineStage
from .factory import create_model, get_spec, list_models
from .sam import SelfAggregation
from .resize import resize_to
from .segfix import SegFixHead, SegFixNet
from .segmentor import Segmentor
from .registry import MODELS, ModelSpec

__all__ = [
    "MODELS", "ModelSpec", "NeighbourhoodAggregation", "ProgressiveRefinement", "RefineStage", "Segmentor",
    "SegFixHead", "SegFixNet", "SegmentationLoss", "SelfAggregation", "build_backbone", "build_head", "create_model", "get_spec",
    "list_backbones", "list_models", "resize_to",
]
