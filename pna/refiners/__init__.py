"""Model-agnostic refiners of any segmentation: SegFix's targets and its offset step, and DenseCRF.

    segfix_targets(labels) -> boundary, direction        (training targets, pna.refiners.segfix_targets)
    refine_with_segfix(labels, boundary_prob, direction_logits)     (test time, pna.refiners.segfix_offsets)
    crf_refine(images, logits, params)                   (DenseCRF, pna.refiners.densecrf)

The SegFix network that predicts the two maps is a model (:mod:`pna.models.segfix`); the
comparison of every refiner on the same coarse heads is :mod:`pna.analysis.refiners`.
"""
from pna.refiners.densecrf import CRF_PARAMS, DEEPLAB_V1, DEEPLAB_V2, DenseCRFParams, crf_params, crf_refine, dense_crf
from pna.refiners.segfix_offsets import OFFSET_SCALE, apply_offsets, offsets_from_maps, refine_with_segfix
from pna.refiners.segfix_targets import BOUNDARY_DISTANCE, DIRECTION_STEPS, NUM_DIRECTIONS, segfix_targets

__all__ = ["BOUNDARY_DISTANCE", "CRF_PARAMS", "DEEPLAB_V1", "DEEPLAB_V2", "DIRECTION_STEPS", "DenseCRFParams", "NUM_DIRECTIONS",
           "OFFSET_SCALE", "apply_offsets", "crf_params", "crf_refine", "dense_crf", "offsets_from_maps", "refine_with_segfix",
           "segfix_targets"]
