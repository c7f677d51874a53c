"""The configs of the refiners PNA is compared with that train: SegFix, per dataset.

SegFix is model-agnostic: one network per dataset refines every coarse head's prediction
(:mod:`pna.analysis.refiners`). Its rows live here, not in :data:`pna.configs.rows.ROWS` (which
holds the paper's rows, each trained with a setting of the PNA authors): a refiner row trains with
its own authors' published recipe (docs/refiners.md), held in :data:`SEGFIX_RECIPE`.

* ``cityscapes/segfix_hrnet48``: SegFix's Cityscapes recipe as published (``basis="published"``):
  HRNet-W48 from ImageNet weights, 80000 iterations of batch 16 on 512 x 512 random crops (no
  rescaling) with flips, SGD lr 0.04, momentum 0.9, weight decay 5e-4 on every parameter, poly 0.9;
  at test the full 1024 x 2048 image in 512 x 512 windows every 170 px (their validation run). Not reproduced: their random brightness shift (+-10
  of 255; our photometric step is the MMSeg distortion, so it is off) and InPlace-ABN (BatchNorm).
* ``voc/segfix_hrnet48``: SegFix published no VOC recipe (``basis="inferred"``): the Cityscapes
  recipe unchanged on VOC's aug set (its images are smaller than the crop: padded, as theirs are).

The smoke profile of both is the smoke recipe of every row (:func:`pna.configs.smoke.smoke_config`):
the same half-width ResNet-10 and schedule, so that the two share one run.

Example::

    >>> cfg = refiner_config(REFINER_ROWS["cityscapes/segfix_hrnet48"], "paper")
    >>> cfg.optim.optimizer, cfg.optim.lr, cfg.train.iters, cfg.train.batch_size, cfg.data.crop
    ('sgd', 0.04, 80000, 16, (512, 512))
    >>> refiner_config(REFINER_ROWS["voc/segfix_hrnet48"], "smoke").model.overrides["backbone"]
    'resnet10c_half'
"""
from __future__ import annotations

from dataclasses import dataclass

from pna.configs.rows import PAPER_DATA, Row
from pna.configs.schema import Config, DataConfig, EvalConfig, ModelConfig, OptimConfig, TrainConfig

REFINERS_TABLE = "refiners"
# Test images scored per head in the smoke profile when none is given (the paper profile: the whole
# split): the first 16 of the 32 synthetic val images give every method's mIoU within 0.7 points of
# all 32 and the same order of methods on every head, at half the cost (docs/refiners.md).
SMOKE_TEST_IMAGES = 16
REFINER_BASES = ("published", "inferred")


@dataclass(frozen=True)
class SegFixRecipe:
    """SegFix's Cityscapes training (openseg.pytorch, docs/refiners.md)."""

    iters: int = 80000
    batch_size: int = 16
    crop: tuple[int, int] = (512, 512)
    lr: float = 0.04
    momentum: float = 0.9
    weight_decay: float = 5e-4
    poly_power: float = 0.9
    gpus: int = 4


SEGFIX_RECIPE = SegFixRecipe()


@dataclass(frozen=True)
class RefinerRow:
    """A refiner that trains: its dataset, name, registry model and where its recipe comes from."""

    dataset: str
    name: str
    model: str
    basis: str
    note: str = ""

    def __post_init__(self) -> None:
        if self.basis not in REFINER_BASES:
            raise ValueError(f"refiner row {self.config_name}: basis must be one of {REFINER_BASES}, got {self.basis!r}")

    @property
    def config_name(self) -> str:
        return f"{self.dataset}/{self.name}"

    @property
    def table(self) -> str:
        return REFINERS_TABLE

    @property
    def label(self) -> str:
        """The name its results JSON carries (``results/refiners/<label>.<profile>.json``)."""
        return f"segfix_{self.dataset}"

    def as_row(self) -> Row:
        """The row as :func:`pna.configs.smoke.smoke_config` takes it (its smoke profile)."""
        return Row(self.table, self.dataset, self.label, self.model, setting="", basis="inferred")


REFINER_ROWS: dict[str, RefinerRow] = {row.config_name: row for row in (
    RefinerRow("cityscapes", "segfix_hrnet48", "segfix_hrnet48", "published",
               "SegFix's Cityscapes recipe (docs/refiners.md)"),
    RefinerRow("voc", "segfix_hrnet48", "segfix_hrnet48", "inferred",
               "SegFix published no VOC recipe: its Cityscapes recipe on VOC aug"),
)}


def _paper(row: RefinerRow, recipe: SegFixRecipe = SEGFIX_RECIPE) -> Config:
    files = PAPER_DATA[row.dataset]
    return Config(
        name=row.config_name, table=row.table, row=row.label, profile="paper",
        data=DataConfig(dataset=files["dataset"], eval_dataset=files.get("eval_dataset"), eval_split=files["eval_split"],
                        crop=recipe.crop, scale_range=(1.0, 1.0), flip=True, photometric=False, pad="crop",
                        eval_short_side=None, options=dict(files.get("options", {})),
                        eval_options=dict(files.get("eval_options", {}))),
        model=ModelConfig(name=row.model, overrides={}, loss={}, allow_random_init=False),
        optim=OptimConfig(optimizer="sgd", lr=recipe.lr, momentum=recipe.momentum, weight_decay=recipe.weight_decay,
                          warmup_iters=0, poly_power=recipe.poly_power, decay_rule="all"),
        train=TrainConfig(iters=recipe.iters, batch_size=recipe.batch_size, eval_interval=recipe.iters // 10,
                          checkpoint_interval=recipe.iters // 10, amp=True),
        eval=EvalConfig(mode="slide", crop=recipe.crop, stride=tuple(c // 3 for c in recipe.crop)),
    )


def refiner_config(row: RefinerRow, profile: str) -> Config:
    """The config of refiner ``row`` at ``profile`` ("smoke" or "paper")."""
    if profile == "paper":
        return _paper(row)
    from pna.configs.smoke import smoke_config

    cfg = smoke_config(row.as_row())
    cfg.name = row.config_name
    return cfg
