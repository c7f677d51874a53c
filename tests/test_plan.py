"""`pna plan`: peak memory per micro-batch from the measured table, and the split that fits a card."""
import shutil
from pathlib import Path

import pytest

from pna.analysis.card_fit import (BYTES_PER_PARAM, CPU_BASELINE_MB, CUDA_RESERVE_MB, Footprint, choose_split,
                                   footprints, plan_table)
from pna.cli import dispatch

ROOT = Path(__file__).resolve().parents[1]


def _root(tmp_path: Path, cpu_peak: float, cuda_peak: float | None = None) -> Path:
    (tmp_path / "results" / "rehearsal").mkdir(parents=True)
    (tmp_path / "results" / "cost").mkdir(parents=True)
    (tmp_path / "results" / "cost" / "all_models.csv").write_text("model,params_m\nfcn_r50_os32,50.0\n")
    header = "config,device,crop,batch,s_per_iter,peak_mb,eval_s,eval_size,amp_step_s,resumed_at,status,error\n"
    (tmp_path / "results" / "rehearsal" / "cpu.csv").write_text(
        header + f"voc/fcn_r50_os32,cpu,512x512,2,6.4,{cpu_peak},1,512x683,6,1,ok,\n")
    if cuda_peak is not None:
        (tmp_path / "results" / "rehearsal" / "cuda.csv").write_text(
            header + f"voc/fcn_r50_os32,cuda,512x512,2,0.3,{cuda_peak},1,512x683,,1,ok,\n")
    return tmp_path


def test_footprint_from_the_cpu_table_by_hand(tmp_path):
    root = _root(tmp_path, cpu_peak=4000.0)
    fp = footprints(root)["voc/fcn_r50_os32"]
    state = 50e6 * 16 / 2 ** 20                                  # 762.9 MB: weights, grads, AdamW moments
    assert BYTES_PER_PARAM == 16 and fp.source == "cpu"
    assert fp.state_mb == pytest.approx(state)
    assert fp.per_image_mb == pytest.approx((4000 - 740 - state) / 2)  # (peak - baseline - state) / batch 2
    assert CPU_BASELINE_MB == 740
    # a GPU-measured table wins, without the CPU process's baseline
    fp = footprints(_root(tmp_path / "gpu", cpu_peak=4000.0, cuda_peak=3000.0))["voc/fcn_r50_os32"]
    assert fp.source == "cuda" and fp.per_image_mb == pytest.approx((3000 - state) / 2)


def test_the_largest_micro_batch_that_fits():
    fp = Footprint("row", "cpu", state_mb=1000.0, per_image_mb=1000.0)
    # peaks: 16 images 18024 MB, 8: 10024, 4: 6024, 2: 4024, 1: 3024 (+1024 reserve each); 90% of the card
    assert CUDA_RESERVE_MB == 1024
    assert choose_split(fp, 16, 1, 24).micro_batch == 16        # 18024 <= 22118
    assert choose_split(fp, 16, 1, 12).micro_batch == 8         # 10024 <= 11059 < 18024
    assert choose_split(fp, 16, 1, 6).micro_batch == 2          # 6024 > 5529, 4024 <= 5529
    assert choose_split(fp, 16, 4, 80).text() == "4 process(es) x 4 images x 1 accumulation steps = 16"
    assert choose_split(fp, 16, 1, 3) is None                   # one image needs 3024 > 2765
    assert choose_split(fp, 16, 1, 6, chunk=4) is None          # 4 images need 6024 > 5529: no chunk of 4 fits
    assert choose_split(fp, 16, 1, 7, chunk=4).micro_batch == 4


def test_pna_plan_prints_the_split_and_the_caveat(capsys):
    dispatch(["plan", "--config", "voc/fcn_r50_os32", "--gpu-mem", "80", "4"])
    out = capsys.readouterr().out
    assert "CPU RSS is not GPU memory" in out
    assert "80 GB: 1 process(es) x 16 images x 1 accumulation steps = 16" in out
    assert "4 GB: 1 process(es) x 2 images x 8 accumulation steps = 16" in out  # 0.7 + 2 x 0.58 + 1 GB <= 3.6 GB
    table = plan_table([24], gpus=4, configs=["voc/fcn_r50_os32", "cityscapes/fpn_r103_pna"])
    assert list(table["24 GB"]) == ["4x1", "4x1"]


def test_the_per_image_estimate_divides_by_the_batch_the_rehearsal_ran(tmp_path):
    """The GPU check rehearses at the authors' per-GPU batch (4), the CPU rehearsal at 2: the batch
    column says which; the caching allocator's reserve is the peak where the table has it."""
    root = _root(tmp_path, cpu_peak=4000.0)
    header = "config,device,crop,batch,s_per_iter,peak_mb,reserved_mb,status,error\n"
    (root / "results" / "rehearsal" / "cuda.csv").write_text(
        header + "voc/fcn_r50_os32,cuda,512x512,4,0.3,5000,6000,ok,\n")
    fp = footprints(root)["voc/fcn_r50_os32"]
    state = 50e6 * 16 / 2 ** 20
    assert fp.source == "cuda" and fp.per_image_mb == pytest.approx((6000 - state) / 4)


def test_the_readme_card_table_is_what_pna_plan_prints_now():
    """The README's table of which row fits which card is `pna plan --gpu-mem 12 24 48 80` on the
    committed rehearsal table: it goes stale when results/rehearsal/cpu.csv changes and the README
    is not regenerated."""
    text = (ROOT / "README.md").read_text()
    start = text.index("| row (batch 16) | weights + AdamW, GB | GB per image |")
    lines = text[start:].split("\n\n")[0].splitlines()[2:]
    readme = {}
    for line in lines:
        cells = [c.strip().strip("`") for c in line.strip("|").split("|")]
        readme[cells[0]] = cells[1:]
    assert len(readme) >= 10, "the README table lost its rows"
    table = plan_table([12, 24, 48, 80], configs=list(readme))
    for config, cells in readme.items():
        line = table.loc[config]
        expected = [f"{line['state_GB']:g}", f"{line['per_image_GB']:g}",
                    line["12 GB"], line["24 GB"], line["48 GB"], line["80 GB"]]
        assert [f"{float(c):g}" for c in cells[:2]] + cells[2:] == expected, \
            f"{config}: regenerate the README table with `pna plan --gpu-mem 12 24 48 80 --markdown`"


def test_the_markdown_flag_prints_the_readme_table(capsys):
    """What `--markdown` prints is the README's table, line for line (the test above checks its figures)."""
    assert dispatch(["plan", "--gpu-mem", "12", "24", "48", "80", "--markdown"]) == 0
    printed = capsys.readouterr().out.strip()
    text = (ROOT / "README.md").read_text()
    start = text.index("| row (batch 16) |")
    assert printed == text[start:].split("\n\n")[0].strip()
    with pytest.raises(ValueError, match="drop --config"):
        dispatch(["plan", "--gpu-mem", "12", "--markdown", "--config", "voc/fcn_r50_os32_pna"])
