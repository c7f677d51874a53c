"""The authors' PNA head (same module names in both branches) -> our ``ProgressiveRefinement``.

Their head keeps one entry per backbone level in four ModuleDicts (``patch_embeds``, ``value_embeds``,
``stages``, ``conv_seg_layers``) keyed by a level name: ``pna3..pna0`` in MMSeg, ``res5..res2`` in
Detectron2, both processed from res5 down to res2. Our ``refine.stages.0..3`` run in that same order
(res5 first), so the level name picks our stage index. Within a stage no weight is permuted: their
fused q/k projection, SAM's qkv and the bias table use our head-major layouts (``docs/authors_checkpoints.md``).

Example:
    >>> rename = pna_rename(lambda level: {"res5": 0, "res2": 3}.get(level))
    >>> rename("stages.res5.blocks.0.attn.embed_v.weight"), rename("conv_seg_layers.res2.bias")
    ('stages.0.nam.v.weight', 'stages.3.classifier.bias')
    >>> rename("stages.res5.blocks.1.attn.embed_v.weight") is None  # one block per stage
    True
"""
from __future__ import annotations

import re
from typing import Callable

# their "stages.<level>.blocks.0.<name>" -> our "stages.<m>.<name>"
BLOCK_NAMES: dict[str, str] = {
    # SAM (a Restormer block); its LayerNorms keep their parameters in a `body` submodule
    "atten1.norm1.body.weight": "sam.norm1.weight",
    "atten1.norm1.body.bias": "sam.norm1.bias",
    "atten1.attn.temperature": "sam.attn.temperature",
    "atten1.attn.qkv.weight": "sam.attn.qkv.weight",
    "atten1.attn.qkv_dwconv.weight": "sam.attn.qkv_dw.weight",
    "atten1.attn.project_out.weight": "sam.attn.proj.weight",
    "atten1.norm2.body.weight": "sam.norm2.weight",
    "atten1.norm2.body.bias": "sam.norm2.bias",
    "atten1.ffn.project_in.weight": "sam.ffn.expand.weight",
    "atten1.ffn.dwconv.weight": "sam.ffn.dw.weight",
    "atten1.ffn.project_out.weight": "sam.ffn.shrink.weight",
    # NAM inputs: LayerNorm of the query (norm1) and of the value (norm1_2)
    "norm1.weight": "norm_query.weight",
    "norm1.bias": "norm_query.bias",
    "norm1_2.weight": "norm_value.weight",
    "norm1_2.bias": "norm_value.bias",
    # NAM (their neighbourhood cross-attention): fused q/k, value projection, output projection, bias table
    "attn.rpb": "nam.rpb",
    "attn.qk.weight": "nam.qk.weight",
    "attn.qk.bias": "nam.qk.bias",
    "attn.embed_v.weight": "nam.v.weight",
    "attn.embed_v.bias": "nam.v.bias",
    "attn.proj.weight": "nam.proj.weight",
    "attn.proj.bias": "nam.proj.bias",
    # MLP and the output LayerNorm
    "norm2.weight": "norm_mlp.weight",
    "norm2.bias": "norm_mlp.bias",
    "mlp.fc1.weight": "mlp.fc1.weight",
    "mlp.fc1.bias": "mlp.fc1.bias",
    "mlp.fc2.weight": "mlp.fc2.weight",
    "mlp.fc2.bias": "mlp.fc2.bias",
    "out_norm.weight": "norm_out.weight",
    "out_norm.bias": "norm_out.bias",
}
# their "<dict>.<level>.<leaf>" -> our "stages.<m>.<module>.<leaf>"
LEVEL_MODULES: dict[str, str] = {
    "patch_embeds": "query",      # 1x1 conv of the backbone feature
    "value_embeds": "value",      # 1x1 conv of the previous prediction
    "conv_seg_layers": "classifier",
}
_LEVEL_KEY = re.compile(r"(patch_embeds|value_embeds|conv_seg_layers)\.(\w+)\.(weight|bias)")
_BLOCK_KEY = re.compile(r"stages\.(\w+)\.blocks\.0\.(.+)")


def pna_rename(stage_of: Callable[[str], int | None]) -> Callable[[str], str | None]:
    """A rename of their PNA head's keys (relative to the head) to ours (relative to ``refine.``);
    ``stage_of(level)`` is our stage index for their level name (None: not a level of theirs)."""

    def rename(key: str) -> str | None:
        level_key, block_key = _LEVEL_KEY.fullmatch(key), _BLOCK_KEY.fullmatch(key)
        if level_key:
            level, name = level_key[2], f"{LEVEL_MODULES[level_key[1]]}.{level_key[3]}"
        elif block_key and block_key[2] in BLOCK_NAMES:
            level, name = block_key[1], BLOCK_NAMES[block_key[2]]
        else:
            return None
        stage = stage_of(level)
        return None if stage is None else f"stages.{stage}.{name}"
    return rename
