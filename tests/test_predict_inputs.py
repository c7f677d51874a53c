"""Reading a user's images: EXIF orientations 1-8, mode conversions, 16-bit, bad files, which files.

The expected pixels of each orientation come from the EXIF tag's definition (where the stored 0th
row and 0th column are shown), written here with numpy, not from Pillow."""
import numpy as np
import pytest
from PIL import Image

from pna.inference.inputs import IMAGE_SUFFIXES, discover, read_rgb

ORIENTATION = 0x0112  # the EXIF tag
# What a viewer shows for stored pixels `raw` (H, W, 3) under each orientation value (EXIF 2.3, tag 274:
# 1 top-left, 2 top-right, 3 bottom-right, 4 bottom-left, 5 left-top, 6 right-top, 7 right-bottom, 8 left-bottom).
SHOWN = {
    1: lambda raw: raw,
    2: lambda raw: raw[:, ::-1],                          # mirrored left-right
    3: lambda raw: raw[::-1, ::-1],                       # turned 180 degrees
    4: lambda raw: raw[::-1, :],                          # mirrored top-bottom
    5: lambda raw: raw.transpose(1, 0, 2),                # stored row 0 = shown column 0
    6: lambda raw: raw[::-1].transpose(1, 0, 2),          # turned 90 degrees clockwise to show
    7: lambda raw: raw[::-1, ::-1].transpose(1, 0, 2),    # the anti-diagonal transpose
    8: lambda raw: raw[:, ::-1].transpose(1, 0, 2),       # turned 90 degrees counter-clockwise to show
}


def stored_pixels(height: int = 6, width: int = 10) -> np.ndarray:
    """Every pixel a distinct colour, so that any wrong turn or mirror shows."""
    index = np.arange(height * width).reshape(height, width)
    return np.stack([index * 4 % 256, index // 64 * 40, 255 - index], axis=-1).astype(np.uint8)


@pytest.mark.parametrize("orientation", range(1, 9))
def test_exif_orientations_in_png_give_the_pixels_a_viewer_shows(tmp_path, orientation):
    raw = stored_pixels()
    exif = Image.Exif()
    exif[ORIENTATION] = orientation
    Image.fromarray(raw).save(tmp_path / "x.png", exif=exif)
    rgb, note = read_rgb(tmp_path / "x.png")
    assert note is None and np.array_equal(rgb, SHOWN[orientation](raw))


@pytest.mark.parametrize("orientation", [6, 8])
def test_exif_orientation_in_jpeg(tmp_path, orientation):
    """JPEG (where cameras write the tag) is lossy: blocks of 8 x 8 one colour keep the pattern."""
    blocks = np.kron(stored_pixels(3, 5), np.ones((8, 8, 1), dtype=np.uint8))
    exif = Image.Exif()
    exif[ORIENTATION] = orientation
    Image.fromarray(blocks).save(tmp_path / "x.jpg", exif=exif, quality=95)
    rgb, _ = read_rgb(tmp_path / "x.jpg")
    expected = SHOWN[orientation](blocks)
    assert rgb.shape == expected.shape == (40, 24, 3)
    assert np.abs(rgb.astype(int) - expected).mean() < 4


def test_grayscale_palette_rgba_and_16_bit_are_converted_and_said(tmp_path):
    gray = np.array([[0, 100], [200, 255]], dtype=np.uint8)
    Image.fromarray(gray).save(tmp_path / "gray.png")
    rgb, note = read_rgb(tmp_path / "gray.png")
    assert np.array_equal(rgb, np.repeat(gray[..., None], 3, axis=2)) and "grayscale" in note

    palette = Image.fromarray(np.array([[0, 1], [1, 0]], dtype=np.uint8))
    palette.putpalette([10, 20, 30, 200, 100, 50] + [0] * 762)
    palette.save(tmp_path / "palette.png")
    rgb, note = read_rgb(tmp_path / "palette.png")
    assert rgb[0, 0].tolist() == [10, 20, 30] and rgb[0, 1].tolist() == [200, 100, 50] and "palette" in note

    rgba = np.zeros((2, 2, 4), dtype=np.uint8)
    rgba[..., 0], rgba[..., 3] = 180, 0  # fully transparent red: alpha dropped, colour kept
    Image.fromarray(rgba).save(tmp_path / "rgba.png")
    rgb, note = read_rgb(tmp_path / "rgba.png")
    assert rgb[0, 0].tolist() == [180, 0, 0] and "alpha" in note

    sixteen = np.array([[0, 255], [256, 65535]], dtype=np.uint16)  # high byte: 0, 0, 1, 255
    Image.fromarray(sixteen).save(tmp_path / "deep.png")
    rgb, note = read_rgb(tmp_path / "deep.png")
    assert rgb[..., 0].tolist() == [[0, 0], [1, 255]] and "16-bit" in note and "high byte" in note


def test_float_images_are_refused_with_the_file_named(tmp_path):
    Image.fromarray(np.ones((2, 2), dtype=np.float32)).save(tmp_path / "float.tif")
    with pytest.raises(ValueError, match=r"float.tif: cannot read image: image mode F \(32-bit float\)"):
        read_rgb(tmp_path / "float.tif")


def test_truncated_and_non_image_files_name_the_file_and_the_cause(tmp_path):
    Image.fromarray(stored_pixels(64, 64)).save(tmp_path / "full.jpg")
    data = (tmp_path / "full.jpg").read_bytes()
    (tmp_path / "cut.jpg").write_bytes(data[: len(data) // 2])
    with pytest.raises(ValueError, match=r"cut.jpg: cannot read image: image file is truncated"):
        read_rgb(tmp_path / "cut.jpg")
    (tmp_path / "text.png").write_text("hello")
    with pytest.raises(ValueError, match=r"text.png: cannot read image: cannot identify image file"):
        read_rgb(tmp_path / "text.png")


@pytest.mark.parametrize("suffix", IMAGE_SUFFIXES)
def test_every_listed_suffix_reads(tmp_path, suffix):
    raw = stored_pixels()
    Image.fromarray(raw).save(tmp_path / f"x{suffix}", **({"quality": 100} if suffix in (".jpg", ".jpeg", ".webp") else {}))
    rgb, _ = read_rgb(tmp_path / f"x{suffix}")
    assert rgb.shape == raw.shape and np.abs(rgb.astype(int) - raw).mean() < 12


def test_discovery_of_files_folders_and_globs(tmp_path):
    for rel in ("a/one.jpg", "a/sub/two.PNG", "a/notes.txt", "b/three.webp"):
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_bytes(b"")
    found = discover([str(tmp_path / "a"), str(tmp_path / "b" / "*.webp"), str(tmp_path / "a" / "one.jpg")])
    assert [(i.name, i.path.name) for i in found] == [("one", "one.jpg"), ("sub/two", "two.PNG"), ("three", "three.webp")]
    (tmp_path / "b" / "one.png").write_bytes(b"")
    with pytest.raises(ValueError, match="would both be written as 'one'"):
        discover([str(tmp_path / "a"), str(tmp_path / "b" / "one.png")])
    with pytest.raises(FileNotFoundError, match="no such file or folder"):
        discover([str(tmp_path / "missing.jpg")])
    with pytest.raises(FileNotFoundError, match="matches no images"):
        discover([str(tmp_path / "*.bmp")])
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="holds no images"):
        discover([str(tmp_path / "empty")])
