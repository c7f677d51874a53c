"""The built-in synthetic dataset: generated once into a cache folder, in the PASCAL VOC layout.

Six object classes on a cluttered grey background, each told apart by colour and texture (so class
identity is learnt in a few hundred CPU iterations), with shapes whose placement needs fine
features. Sizes are in pixels, independent of the image size (a larger image holds more objects):

* thin (a stride-4 prediction can place them, a stride-32 one cannot): bent ``stripe`` limbs and
  ``ring`` outlines 7-12 px wide, clusters of ``speck`` squares 9-14 px;
* bulky (boundaries everywhere, but a coarse prediction finds them): ``disc`` ellipses, ``star``
  polygons, rotated ``checker`` rectangles, 28-88 px across.

On the smoke set (256 x 256) the best prediction constant per stride-4 cell reaches about 87% mIoU
(thin classes 78-83%), per stride-8 cell 77% (thin 64-69%), per stride-32 cell 37% (thin classes
below 19%): see :mod:`pna.analysis.thin`.

Files (``JPEGImages/*.jpg``, palette ``SegmentationClass/*.png``,
``ImageSets/Segmentation/{train,val}.txt``) are read by the ordinary VOC loader. Each image draws
from its own generator seeded by (seed, split, index): the same options give byte-identical files.

Example:
    >>> import tempfile
    >>> root = ensure_synthetic(tempfile.mkdtemp(), num_train=4, num_val=2, size=64)
    >>> sorted(p.name for p in root.iterdir())
    ['ImageSets', 'JPEGImages', 'SegmentationClass', 'meta.json']
"""
from __future__ import annotations

import functools
import json
import os
import shutil
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from .catalog import SYNTHETIC_CLASSES, voc_palette

GENERATOR_VERSION = 2  # bump when the drawing changes, so old caches are not reused
SPLIT_CODES = {"train": 0, "val": 1}

# Saturated, well separated hues per object class; the background is kept low in saturation.
CLASS_COLOURS = np.array([
    (0, 0, 0), (215, 45, 40), (40, 185, 60), (50, 80, 225), (225, 205, 35), (205, 50, 205), (35, 200, 215),
], dtype=np.float32)
# Relative frequency of the object classes (disc, stripe, star, ring, checker, speck): the thin
# classes are drawn more often, so that their pixel share is not negligible.
CLASS_WEIGHTS = np.array([1.0, 1.6, 1.0, 1.3, 1.0, 1.3])
OBJECTS_PER_128 = (3, 7)  # objects per 128 x 128 area (low inclusive, high exclusive)
CLUTTER_PER_128 = (3, 9)  # grey distractor lines and outlines per 128 x 128 area


@dataclass(frozen=True)
class SyntheticConfig:
    """Options of the synthetic set; every field enters the cache key."""

    num_train: int = 256
    num_val: int = 32
    size: int = 256
    seed: int = 0

    def __post_init__(self) -> None:
        if self.num_train < 1 or self.num_val < 1:
            raise ValueError(f"num_train and num_val must be >= 1, got {self.num_train}, {self.num_val}")
        if self.size < 32:
            raise ValueError(f"size must be >= 32 pixels, got {self.size}")

    @property
    def key(self) -> str:
        return f"v{GENERATOR_VERSION}-s{self.size}-n{self.num_train}-{self.num_val}-seed{self.seed}"


def default_cache_dir() -> Path:
    """``$PNA_CACHE`` if set, else ``~/.cache/pna``."""
    return Path(os.environ.get("PNA_CACHE") or Path.home() / ".cache" / "pna")


def _per_area(bounds: tuple[int, int], rng: np.random.Generator, s: int) -> int:
    return max(1, int(round(rng.integers(*bounds) * (s / 128) ** 2)))


def _background(rng: np.random.Generator, s: int) -> np.ndarray:
    grey = rng.uniform(60, 190)
    base = grey + rng.uniform(-14, 14, size=3)
    # Smooth shading: mostly brightness, a little tint, so the background stays unsaturated.
    low_freq = (rng.uniform(-30, 30, size=(4, 4, 1)) + rng.uniform(-8, 8, size=(4, 4, 3))).astype(np.float32)
    shading = np.stack([np.asarray(Image.fromarray(np.ascontiguousarray(low_freq[..., c])).resize((s, s), Image.BILINEAR))
                        for c in range(3)], axis=-1)
    return (base + shading).astype(np.float32)


def _clutter(draw: ImageDraw.ImageDraw, rng: np.random.Generator, s: int) -> None:
    """Grey lines and outlines as wide as the thin objects, but background: colour decides."""
    for _ in range(_per_area(CLUTTER_PER_128, rng, s)):
        g = int(rng.uniform(40, 220))
        fill = tuple(int(np.clip(g + d, 0, 255)) for d in rng.uniform(-10, 10, size=3))
        x0, y0, x1, y1 = (int(v) for v in rng.uniform(0, s, size=4))
        if rng.random() < 0.5:
            draw.line([(x0, y0), (x1, y1)], fill=fill, width=int(rng.integers(2, 9)))
        else:
            r = int(rng.uniform(8, 30))
            draw.ellipse([x0 - r, y0 - r, x0 + r, y0 + r], outline=fill, width=int(rng.integers(2, 8)))


def _rotation(phase: float) -> np.ndarray:
    return np.array([[np.cos(phase), np.sin(phase)], [-np.sin(phase), np.cos(phase)]])


def _draw_object(draw: ImageDraw.ImageDraw, cls: int, value: int, rng: np.random.Generator, s: int) -> None:
    """Draw one instance of class ``cls`` with pixel value ``value`` (its instance number)."""
    cx, cy = rng.uniform(0, s, size=2)
    phase = rng.uniform(0, 2 * np.pi)
    if cls == 1:  # disc: a rotated ellipse with a smooth boundary
        a, b = rng.uniform(18, 44), rng.uniform(14, 32)
        t = np.linspace(0, 2 * np.pi, 64, endpoint=False)
        pts = np.stack([a * np.cos(t), b * np.sin(t)], 1) @ _rotation(phase)
        draw.polygon([(cx + x, cy + y) for x, y in pts], fill=value)
    elif cls == 2:  # stripe: a bent limb 7-12 px wide
        pts = [(cx, cy)]
        for _ in range(rng.integers(1, 4)):
            phase += rng.uniform(-1.2, 1.2)
            length = rng.uniform(20, 50)
            pts.append((pts[-1][0] + length * np.cos(phase), pts[-1][1] + length * np.sin(phase)))
        draw.line(pts, fill=value, width=int(rng.integers(7, 13)), joint="curve")
    elif cls == 3:  # star: spikes around a core
        n = int(rng.integers(4, 8))
        radii = np.empty(2 * n)
        radii[0::2] = rng.uniform(20, 40, size=n)
        radii[1::2] = rng.uniform(10, 16, size=n)
        angles = phase + np.linspace(0, 2 * np.pi, 2 * n, endpoint=False)
        draw.polygon([(cx + r * np.cos(a), cy + r * np.sin(a)) for r, a in zip(radii, angles)], fill=value)
    elif cls == 4:  # ring: an outline 7-12 px wide
        r = rng.uniform(12, 30)
        draw.ellipse([cx - r, cy - r, cx + r, cy + r], outline=value, width=int(rng.integers(7, 13)))
    elif cls == 5:  # checker: a rotated rectangle (its texture is the checkerboard)
        w, h = rng.uniform(16, 34, size=2)
        corners = np.array([(-w, -h), (w, -h), (w, h), (-w, h)]) @ _rotation(phase)
        draw.polygon([(cx + x, cy + y) for x, y in corners], fill=value)
    elif cls == 6:  # specks: a cluster of 9-14 px squares
        for _ in range(rng.integers(4, 10)):
            x, y = cx + rng.normal(0, 12), cy + rng.normal(0, 12)
            d = rng.uniform(9, 14)
            draw.rectangle([x, y, x + d, y + d], fill=value)


@functools.lru_cache(maxsize=4)
def _grid(s: int) -> tuple[np.ndarray, np.ndarray]:
    yy, xx = np.mgrid[0:s, 0:s].astype(np.float32)
    return yy, xx


def _texture(label: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A multiplicative brightness pattern per class (random phase per image), 1 where plain."""
    yy, xx = _grid(label.shape[0])
    ox, oy = rng.integers(0, 8, size=2)
    tex = np.ones(label.shape, dtype=np.float32)
    patterns = {
        3: lambda x, y: 1 + 0.25 * np.sign(np.sin((x + y + ox) * np.pi / 3)),           # star: hatching
        4: lambda x, y: 1 + 0.12 * np.sin((x - y + oy) * np.pi / 2),                    # ring: ripple
        5: lambda x, y: np.where(((x + ox) // 4 + (y + oy) // 4) % 2 == 0, 1.2, 0.55),  # checkerboard
    }
    for cls, pattern in patterns.items():
        where = label == cls
        if where.any():
            tex[where] = pattern(xx[where], yy[where])
    return tex


def render_sample(rng: np.random.Generator, size: int) -> tuple[np.ndarray, np.ndarray]:
    """One (RGB uint8 image, class-id uint8 label) pair of ``size`` x ``size`` drawn from ``rng``."""
    s = size
    canvas = Image.fromarray(np.clip(_background(rng, s), 0, 255).astype(np.uint8))
    _clutter(ImageDraw.Draw(canvas), rng, s)
    background = np.asarray(canvas, dtype=np.float32)

    instances = Image.new("L", (s, s), 0)
    draw = ImageDraw.Draw(instances)
    num = min(_per_area(OBJECTS_PER_128, rng, s), 255)
    objects = rng.choice(np.arange(1, len(SYNTHETIC_CLASSES)), size=num, p=CLASS_WEIGHTS / CLASS_WEIGHTS.sum())
    classes = np.concatenate([[0], objects])
    colours = np.zeros((num + 1, 3), dtype=np.float32)
    for i in range(1, num + 1):
        _draw_object(draw, int(classes[i]), i, rng, s)
        colours[i] = CLASS_COLOURS[classes[i]] * rng.uniform(0.75, 1.1) + rng.uniform(-15, 15, size=3)
    inst = np.asarray(instances)
    label = classes[inst].astype(np.uint8)

    texture = _texture(label, rng)[..., None]
    image = np.where(inst[..., None] > 0, colours[inst] * texture, background)
    image += 9 * rng.standard_normal(size=image.shape, dtype=np.float32)
    return np.clip(image, 0, 255).astype(np.uint8), label


def generate_synthetic(out_dir: str | Path, config: SyntheticConfig = SyntheticConfig()) -> Path:
    """Write the whole set into ``out_dir`` (created; must not exist or be empty) in the VOC layout."""
    out = Path(out_dir)
    if out.exists() and any(out.iterdir()):
        raise FileExistsError(f"refusing to write the synthetic set into non-empty folder {out}")
    for sub in ("JPEGImages", "SegmentationClass", "ImageSets/Segmentation"):
        (out / sub).mkdir(parents=True, exist_ok=True)
    palette = [c for rgb in voc_palette() for c in rgb]
    for split, count in (("train", config.num_train), ("val", config.num_val)):
        ids = []
        for index in range(count):
            rng = np.random.default_rng([config.seed, SPLIT_CODES[split], index])
            image, label = render_sample(rng, config.size)
            sample_id = f"{split}_{index:06d}"
            Image.fromarray(image).save(out / "JPEGImages" / f"{sample_id}.jpg", quality=92, subsampling=0)
            png = Image.fromarray(label).convert("P")
            png.putpalette(palette)
            png.save(out / "SegmentationClass" / f"{sample_id}.png", optimize=False)
            ids.append(sample_id)
        (out / "ImageSets" / "Segmentation" / f"{split}.txt").write_text("\n".join(ids) + "\n")
    meta = asdict(config) | {"generator_version": GENERATOR_VERSION, "classes": list(SYNTHETIC_CLASSES)}
    (out / "meta.json").write_text(json.dumps(meta, indent=1, sort_keys=True) + "\n")
    return out


def ensure_synthetic(cache_dir: str | Path | None = None, num_train: int = 256, num_val: int = 32,
                     size: int = 256, seed: int = 0) -> Path:
    """The folder of the synthetic set with these options, generated on first use.

    Generation goes to a temporary folder that is renamed into place, so two processes generating
    at once both end with one complete set (the loser's copy is discarded).
    """
    config = SyntheticConfig(num_train, num_val, size, seed)
    parent = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    final = parent / "synthetic" / config.key
    if (final / "meta.json").is_file():
        return final
    if cache_dir is not None and parent.is_dir() and any(p.name != "synthetic" for p in parent.iterdir()):
        # A folder given by a user that holds other files is likely a real dataset: never write there.
        raise FileExistsError(f"refusing to generate the synthetic set inside {parent}: it holds other files "
                              "(a dataset folder?); give an empty folder, or None for the cache")
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{config.key}.tmp-", dir=final.parent))
    try:
        generate_synthetic(tmp, config)
        try:
            os.rename(tmp, final)
        except OSError:
            if not (final / "meta.json").is_file():
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return final
