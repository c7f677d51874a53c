"""What a dataset folder holds, told from its layout, so that a folder of one dataset given to another
(a VOC folder in the smoke profile, a Cityscapes folder as VOC) is one line naming the folder, the
dataset expected and what was found, before anything is read or generated there.

Each dataset module documents its layout; :data:`MARKERS` are the entries that tell them apart.

Example::

    >>> import tempfile
    >>> root = Path(tempfile.mkdtemp()); (root / "leftImg8bit").mkdir()
    >>> found_layouts(root)
    ['cityscapes']
    >>> check_root("voc", root)
    Traceback (most recent call last):
    ...
    ValueError: dataset root ... holds a Cityscapes folder (leftImg8bit), not a PASCAL VOC folder: ...
"""
from __future__ import annotations

import inspect
from pathlib import Path

# dataset -> (what its folder is called, entries any one of which marks it), from each module's layout
MARKERS: dict[str, tuple[str, tuple[str, ...]]] = {
    "voc": ("a PASCAL VOC folder", ("JPEGImages", "VOCdevkit/VOC2012/JPEGImages", "VOC2012/JPEGImages")),
    "cityscapes": ("a Cityscapes folder", ("leftImg8bit", "gtFine")),
    "cocostuff10k": ("a COCO-Stuff 10k folder", ("annotations", "imageLists")),
    "deepglobe": ("a DeepGlobe land-cover folder", ("land-train",)),
    "trans10k": ("a Trans10K folder", ("train/images", "validation/images")),
    "synthetic": ("the synthetic set's cache", ("synthetic",)),
}
LAYOUT_OF = {"voc_aug": "voc"}  # datasets that share another's folder


def found_layouts(root: str | Path) -> list[str]:
    """The datasets whose layout ``root`` has (none for a folder that does not exist)."""
    root = Path(root)
    if not root.is_dir():
        return []
    return [name for name, (_, marks) in MARKERS.items() if any((root / m).exists() for m in marks)]


def _found_text(name: str, root: Path) -> str:
    what, marks = MARKERS[name]
    return f"{what} ({next(m for m in marks if (root / m).exists())})"


def check_root(name: str, root: str | Path | None, options: dict | None = None) -> None:
    """A one-line error when ``root`` holds another dataset than ``name`` or ``options`` are not
    ``name``'s (the smoke profile's synthetic-set options left on a real dataset)."""
    check_options(name, options or {}, root)
    if root is None:
        return
    root = Path(root)
    layout = LAYOUT_OF.get(name, name)
    found = found_layouts(root)
    if name == "synthetic":
        real = [f for f in found if f != "synthetic"]
        if real:
            raise ValueError(
                f"dataset root {root} holds {_found_text(real[0], root)}, but the dataset is 'synthetic' (the "
                f"smoke profile's generated set, never written into a dataset folder): leave data.root out, or "
                f"train on it with data.dataset={real[0]} data.options={{}} (notebooks: data_root=...)")
        return
    if layout in MARKERS and found and layout not in found:
        raise ValueError(f"dataset root {root} holds {_found_text(found[0], root)}, not {MARKERS[layout][0]}: "
                         f"dataset {name!r} expects one of {list(MARKERS[layout][1])} there; check data.root "
                         "(data_root) and data.dataset")


def _accepted(name: str) -> set[str]:
    """The keyword options the reader of dataset ``name`` takes (beyond root, split, transform)."""
    from pna.data import CityscapesSegmentation, CocoStuff10k, DeepGlobeLandCover, Trans10k, VOCSegmentation
    from pna.data.synthetic import ensure_synthetic

    reader = {"synthetic": ensure_synthetic, "voc": VOCSegmentation, "voc_aug": VOCSegmentation,
              "cityscapes": CityscapesSegmentation, "cocostuff10k": CocoStuff10k,
              "deepglobe": DeepGlobeLandCover, "trans10k": Trans10k}.get(name)
    if reader is None:
        return set()
    taken = set(inspect.signature(reader).parameters)
    return taken - {"self", "root", "split", "transform", "cache_dir", "aug", "dataset_info"}


def check_options(name: str, options: dict, root: str | Path | None = None) -> None:
    """A one-line error naming the options ``name`` does not take (and whose they are)."""
    accepted = _accepted(name)
    unknown = sorted(set(options) - accepted)
    if not unknown or name not in MARKERS and name not in LAYOUT_OF:
        return
    owner = next((other for other in MARKERS if set(unknown) <= _accepted(other)), None)
    smoke = ", the smoke profile" if owner == "synthetic" else ""
    whose = f" (options of the {owner!r} dataset{smoke})" if owner else ""
    found = found_layouts(root) if root is not None else []
    where = f" (root {root}: {_found_text(found[0], Path(root))})" if found else ""
    raise ValueError(f"dataset {name!r}{where} takes no option(s) {unknown}{whose}; it takes "
                     f"{sorted(accepted) or 'none'}: set data.options={{}} and data.eval_options={{}}")
