"""The explorer and the walkthrough on a user's photo: padding to the model's size divisor, and
notebook 00 through papermill with `image` and `checkpoint`."""
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

import pna
from pna.analysis.explorer import NAMExplorer
from pna.inference import PhotoSet

from test_predict import smoke_checkpoint

ROOT = Path(__file__).resolve().parents[1]


def test_the_explorer_on_a_photo_padded_to_the_models_divisor(tmp_path):
    path, _ = smoke_checkpoint(tmp_path / "final.pt")
    rng = np.random.default_rng(1)
    Image.fromarray(rng.integers(0, 256, (50, 70, 3), dtype=np.uint8)).save(tmp_path / "photo.png")
    loaded = pna.load_model(path, device="cpu")
    loaded.net.size_divisibility = 32  # as the Detectron2 FPN rows: inputs padded to multiples of 32
    photos = PhotoSet(loaded, tmp_path / "photo.png")
    explorer = NAMExplorer(loaded.net, photos, pixel=(45, 66))
    view = explorer.click(x=66, y=45)
    # by hand: zero-pad the normalised image to 64 x 96 at the bottom/right; P4 is the stride-4 map (16 x 24)
    padded = F.pad(photos[0]["image"][None], (0, 96 - 70, 0, 64 - 50))
    with torch.no_grad():
        attention = loaded.net.attention_maps(padded)["P4"][0]
    assert tuple(attention.shape[1:3]) == (16, 24) and view["map_size"] == (16, 24)
    assert view["cell"] == (45 // 4, 66 // 4)
    expected = attention[:, 45 // 4, 66 // 4].numpy()
    assert np.allclose(view["all_heads"].reshape(expected.shape), expected, atol=1e-6)
    pictures = explorer.render()
    assert pictures["image"].shape[:2] == (50, 70) and pictures["prediction"].shape[:2] == (50, 70)


def test_a_photo_set_predicts_as_pna_predict(tmp_path):
    path, _ = smoke_checkpoint(tmp_path / "final.pt")
    Image.fromarray(np.random.default_rng(2).integers(0, 256, (33, 47, 3), dtype=np.uint8)).save(tmp_path / "a.png")
    loaded = pna.load_model(path, device="cpu")
    photos = PhotoSet(loaded, [tmp_path / "a.png"])
    labels = photos.predict(0)
    direct = pna.predict(loaded, tmp_path / "a.png", stages="all")
    assert list(labels) == loaded.stage_names and all(np.array_equal(labels[k], direct[k]) for k in labels)
    assert photos[0]["size"] == (33, 47) and "label" not in photos[0]


@pytest.mark.slow
def test_notebook_00_runs_on_a_real_photo_with_a_checkpoint(samples_dir, tmp_path):
    photo = samples_dir / "voc2012" / "VOCdevkit" / "VOC2012" / "JPEGImages" / "2007_000032.jpg"
    path, _ = smoke_checkpoint(tmp_path / "final.pt")
    env = {**os.environ, "PNA_RUNS_DIR": str(tmp_path / "runs"), "PNA_RESULTS_DIR": str(tmp_path / "results"),
           "HF_HUB_OFFLINE": "1", "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}
    out = tmp_path / "00.ipynb"
    done = subprocess.run([sys.executable, "-m", "papermill", str(ROOT / "notebooks" / "00_nam_walkthrough.ipynb"),
                           str(out), "--cwd", str(ROOT / "notebooks"), "--no-progress-bar", "-p", "image", str(photo),
                           "-p", "checkpoint", str(path)], env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    executed = out.read_text()
    assert "1 image(s) of (281, 500) px (as run)" in executed and "query: image 0, pixel (140, 250)" in executed
    assert "a photo has no label" in executed
    assert not (tmp_path / "runs").exists()  # the checkpoint was used: nothing trained
