"""What each dataset is, without its files: class names, palettes and the classes in the mIoU.

Models are built from these facts (``num_classes``) before any data is read.

Example:
    >>> from pna.data.catalog import info
    >>> info("voc").num_classes, info("deepglobe").eval_classes
    (21, (0, 1, 2, 3, 4, 5))
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np

IGNORE_INDEX = 255
IGNORE_COLOUR = (224, 224, 192)  # VOC's colour for the void border

Colour = tuple[int, int, int]


@dataclass(frozen=True)
class DatasetInfo:
    """Label space of one dataset.

    ``classes[i]`` is train id ``i``; ``palette[i]`` its display colour; ``eval_classes`` the ids
    whose IoU is averaged into the mIoU (taken from the full confusion matrix, so pixels of other
    classes still count as false positives/negatives). Pixels equal to ``ignore_index`` are ignored
    everywhere (training and evaluation).
    """

    name: str
    classes: tuple[str, ...]
    palette: tuple[Colour, ...]
    eval_classes: tuple[int, ...]
    ignore_index: int = IGNORE_INDEX

    def __post_init__(self) -> None:
        if len(self.palette) != len(self.classes):
            raise ValueError(f"{self.name}: {len(self.classes)} classes but {len(self.palette)} colours")
        if any(not 0 <= c < len(self.classes) for c in self.eval_classes):
            raise ValueError(f"{self.name}: eval_classes {self.eval_classes} outside 0..{len(self.classes) - 1}")

    @property
    def num_classes(self) -> int:
        return len(self.classes)


def colorize(label, palette: Sequence[Sequence[int]], ignore_index: int = IGNORE_INDEX) -> np.ndarray:
    """Class-id map (H, W; numpy array or tensor) -> RGB uint8 image; ignored pixels get VOC's void
    colour (the figures' and the training's TensorBoard pictures' colouring).

    >>> colorize(np.array([[0, 1], [255, 1]]), [(0, 0, 0), (128, 0, 0)])[1].tolist()
    [[224, 224, 192], [128, 0, 0]]
    """
    label = label.cpu().numpy() if hasattr(label, "cpu") else np.asarray(label)
    table = np.zeros((256, 3), dtype=np.uint8)
    table[: len(palette)] = np.asarray(palette, dtype=np.uint8)
    table[ignore_index] = IGNORE_COLOUR
    return table[label.astype(np.int64).clip(0, 255)]


def voc_palette(n: int = 256) -> list[Colour]:
    """The PASCAL VOC colour map: the bits of the class id spread over the high bits of R, G, B."""
    colours = []
    for i in range(n):
        r = g = b = 0
        c = i
        for shift in range(7, -1, -1):
            r |= ((c >> 0) & 1) << shift
            g |= ((c >> 1) & 1) << shift
            b |= ((c >> 2) & 1) << shift
            c >>= 3
        colours.append((r, g, b))
    return colours


VOC_CLASSES = (
    "background", "aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat", "chair",
    "cow", "diningtable", "dog", "horse", "motorbike", "person", "pottedplant", "sheep", "sofa",
    "train", "tvmonitor",
)

# Cityscapes: (trainId name, raw labelId, colour) of the 19 evaluated classes (cityscapesScripts).
CITYSCAPES_TRAIN = (
    ("road", 7, (128, 64, 128)), ("sidewalk", 8, (244, 35, 232)), ("building", 11, (70, 70, 70)),
    ("wall", 12, (102, 102, 156)), ("fence", 13, (190, 153, 153)), ("pole", 17, (153, 153, 153)),
    ("traffic light", 19, (250, 170, 30)), ("traffic sign", 20, (220, 220, 0)),
    ("vegetation", 21, (107, 142, 35)), ("terrain", 22, (152, 251, 152)), ("sky", 23, (70, 130, 180)),
    ("person", 24, (220, 20, 60)), ("rider", 25, (255, 0, 0)), ("car", 26, (0, 0, 142)),
    ("truck", 27, (0, 0, 70)), ("bus", 28, (0, 60, 100)), ("train", 31, (0, 80, 100)),
    ("motorcycle", 32, (0, 0, 230)), ("bicycle", 33, (119, 11, 32)),
)
CITYSCAPES_NUM_LABEL_IDS = 34  # raw labelIds 0..33 appear in *_gtFine_labelIds.png

# COCO-Stuff: the 182 ids (1-based, 0 = unlabeled); None marks the 11 thing ids COCO never used.
_COCO_THINGS = (
    "person bicycle car motorcycle airplane bus train truck boat traffic_light fire_hydrant - "
    "stop_sign parking_meter bench bird cat dog horse sheep cow elephant bear zebra giraffe - "
    "backpack umbrella - - handbag tie suitcase frisbee skis snowboard sports_ball kite "
    "baseball_bat baseball_glove skateboard surfboard tennis_racket bottle - wine_glass cup fork "
    "knife spoon bowl banana apple sandwich orange broccoli carrot hot_dog pizza donut cake chair "
    "couch potted_plant bed - dining_table - - toilet - tv laptop mouse remote keyboard cell_phone "
    "microwave oven toaster sink refrigerator - book clock vase scissors teddy_bear hair_drier "
    "toothbrush -"
).split()
_COCO_STUFF = (
    "banner blanket branch bridge building-other bush cabinet cage cardboard carpet ceiling-other "
    "ceiling-tile cloth clothes clouds counter cupboard curtain desk-stuff dirt door-stuff fence "
    "floor-marble floor-other floor-stone floor-tile floor-wood flower fog food-other fruit "
    "furniture-other grass gravel ground-other hill house leaves light mat metal mirror-stuff moss "
    "mountain mud napkin net paper pavement pillow plant-other plastic platform playingfield "
    "railing railroad river road rock roof rug salad sand sea shelf sky-other skyscraper snow "
    "solid-other stairs stone straw structural-other table tent textile-other towel tree vegetable "
    "wall-brick wall-concrete wall-other wall-panel wall-stone wall-tile wall-wood water-other "
    "waterdrops window-blind window-other wood"
).split()
assert len(_COCO_THINGS) == 91 and len(_COCO_STUFF) == 91
COCOSTUFF_IDS: tuple[str | None, ...] = tuple(
    None if n == "-" else n.replace("_", " ") for n in _COCO_THINGS + _COCO_STUFF
)  # index k holds COCO-Stuff id k + 1
COCOSTUFF_CLASSES = tuple(n for n in COCOSTUFF_IDS if n is not None)
assert len(COCOSTUFF_CLASSES) == 171

DEEPGLOBE_CLASSES = ("urban", "agriculture", "rangeland", "forest", "water", "barren")
DEEPGLOBE_COLOURS = ((0, 255, 255), (255, 255, 0), (255, 0, 255), (0, 255, 0), (0, 0, 255), (255, 255, 255))
DEEPGLOBE_UNKNOWN = (0, 0, 0)  # "unknown" land: class 6 in the authors' training, ignored in the mIoU

TRANS10K_CLASSES = ("background", "things", "stuff")
TRANS10K_COLOURS = ((0, 0, 0), (255, 0, 0), (255, 255, 255))

SYNTHETIC_CLASSES = ("background", "disc", "stripe", "star", "ring", "checker", "speck")

_VOC = voc_palette()

INFOS: dict[str, DatasetInfo] = {
    "voc": DatasetInfo("voc", VOC_CLASSES, tuple(_VOC[:21]), tuple(range(21))),
    "voc_aug": DatasetInfo("voc_aug", VOC_CLASSES, tuple(_VOC[:21]), tuple(range(21))),
    "cityscapes": DatasetInfo(
        "cityscapes", tuple(n for n, _, _ in CITYSCAPES_TRAIN), tuple(c for _, _, c in CITYSCAPES_TRAIN),
        tuple(range(19))),
    "cocostuff10k": DatasetInfo(
        "cocostuff10k", COCOSTUFF_CLASSES, tuple(_VOC[1:172]), tuple(range(171))),
    # 7 outputs as the authors train them ("unknown" the 7th); the mIoU averages the 6 land classes.
    "deepglobe": DatasetInfo("deepglobe", DEEPGLOBE_CLASSES + ("unknown",), DEEPGLOBE_COLOURS + (DEEPGLOBE_UNKNOWN,),
                             tuple(range(6))),
    "trans10k": DatasetInfo("trans10k", TRANS10K_CLASSES, TRANS10K_COLOURS, (1, 2)),
    "synthetic": DatasetInfo(
        "synthetic", SYNTHETIC_CLASSES, tuple(_VOC[: len(SYNTHETIC_CLASSES)]),
        tuple(range(len(SYNTHETIC_CLASSES)))),
}

DATASETS: tuple[str, ...] = tuple(INFOS)


def info(name: str) -> DatasetInfo:
    """The label space of dataset ``name`` (one of ``DATASETS``); reads no file."""
    if name not in INFOS:
        from pna.errors import unknown_name_error
        raise unknown_name_error("dataset", name, DATASETS, "pna.data.DATASETS")
    return INFOS[name]
