"""Command-line errors: one line without a traceback (``--debug`` shows it), unknown names with the
nearest matches and where the full list is, unreadable checkpoints named with what to do."""
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from pna.engine.checkpoint import CheckpointError, atomic_save, load_checkpoint
from pna.errors import run_main, unknown_name_error

ROOT = Path(__file__).resolve().parents[1]


def _fails(error: BaseException):
    def main(argv):
        raise error
    return main


def test_run_prints_one_line_and_returns_1(capsys):
    assert run_main(_fails(FileNotFoundError("data folder /x/VOC2012 not found")), [], prog="pna.t") == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err
    assert err.startswith("pna.t: error: data folder /x/VOC2012 not found") and "--debug" in err


def test_run_names_the_type_of_unexpected_errors_and_keeps_the_first_line(capsys):
    assert run_main(_fails(RuntimeError("CUDA out of memory.\nTried to allocate 2 GiB")), [], prog="p") == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "error: RuntimeError: CUDA out of memory. ..." in err


def test_debug_flag_or_environment_lets_the_traceback_through(monkeypatch):
    seen = []

    def main(argv):
        seen.append(argv)
        raise ValueError("bad")

    with pytest.raises(ValueError, match="bad"):
        run_main(main, ["--x", "--debug"])
    assert seen == [["--x"]]  # main never sees --debug
    monkeypatch.setenv("PNA_DEBUG", "1")
    with pytest.raises(ValueError):
        run_main(_fails(ValueError("bad")), [])


def test_run_passes_the_exit_status_and_interrupts(capsys):
    assert run_main(lambda argv: 3, []) == 3 and run_main(lambda argv: {"a": 1}, []) == 0
    assert run_main(_fails(KeyboardInterrupt()), [], prog="p") == 130
    assert capsys.readouterr().err == "p: interrupted\n"


def test_unknown_name_lists_the_nearest_and_where_the_full_list_is():
    names = [f"voc/fcn_r50_os{s}{x}" for s in (8, 32) for x in ("", "_pna", "_pna_nam")] + ["ade/upernet_swin_t", "x/y", "z"]
    message = str(unknown_name_error("config", "voc/fcn_r50_os32_pan", names, "pna.configs.list_configs()"))
    assert message.startswith("unknown config 'voc/fcn_r50_os32_pan'; nearest: 'voc/fcn_r50_os32_pna'")
    assert message.endswith(f"all {len(names)}: pna.configs.list_configs()")
    assert "no close match" in str(unknown_name_error("config", "voc/nonexistent", names, "here"))
    assert str(unknown_name_error("head", "fnc", ["fcn", "psp"], "HEADS")) == "unknown head 'fnc'; expected one of fcn, psp"


@pytest.mark.parametrize("call, nearest, where", [
    (lambda: __import__("pna.configs", fromlist=["x"]).load_config("voc/fcn_r50_os32_pan"),
     "'voc/fcn_r50_os32_pna'", "pna.configs.list_configs()"),
    (lambda: __import__("pna.models", fromlist=["x"]).create_model("upernet_swin_tt", 3),
     "'upernet_swin_t'", "pna.models.list_models()"),
    (lambda: __import__("pna.models", fromlist=["x"]).build_backbone("resnet50"), "resnet50c", "pna.models.list_backbones()"),
    (lambda: __import__("pna.data", fromlist=["x"]).build_dataset("voc2012", "/x", "val"), "voc_aug", "expected one of"),
])
def test_registries_use_the_shared_message(call, nearest, where):
    with pytest.raises(ValueError) as caught:
        call()
    assert nearest in str(caught.value) and where in str(caught.value)


def _truncated_copy(src: Path, dst: Path, keep: float = 0.5) -> Path:
    data = src.read_bytes()
    dst.parent.mkdir(parents=True, exist_ok=True)
    dst.write_bytes(data[: int(len(data) * keep)])
    return dst


@pytest.fixture
def checkpoint(tmp_path) -> Path:
    path = tmp_path / "good.pt"
    atomic_save({"model": {"w": torch.randn(4000)}, "config": {}}, path)
    return path


def test_a_truncated_final_checkpoint_names_the_file_and_the_remedy(checkpoint, tmp_path):
    run_dir = tmp_path / "runs" / "fcn-smoke-abc"
    final = _truncated_copy(checkpoint, run_dir / "final.pt")
    (run_dir / "done.json").write_text("{}")
    with pytest.raises(CheckpointError) as caught:
        load_checkpoint(final)
    message = str(caught.value)
    assert str(final) in message and "truncated" in message and "--overwrite" in message and str(run_dir) in message
    assert isinstance(caught.value, ValueError)


@pytest.mark.parametrize("content", [b"", b"not a checkpoint at all", None])
def test_unreadable_files_raise_checkpoint_error(checkpoint, tmp_path, content):
    path = tmp_path / "run" / "last.pt"
    if content is None:
        _truncated_copy(checkpoint, path, keep=0.97)
    else:
        path.parent.mkdir(parents=True)
        path.write_bytes(content)
    with pytest.raises(CheckpointError, match="cannot read checkpoint .*last.pt.*cannot resume"):
        load_checkpoint(path)


def test_a_torch_file_that_is_no_training_checkpoint(tmp_path):
    path = tmp_path / "weights.pt"
    torch.save({"state_dict": {}}, path)
    with pytest.raises(CheckpointError, match="not a pna training checkpoint"):
        load_checkpoint(path)
    atomic_save({"model": {}, "config": {"a": 1}}, path)
    assert load_checkpoint(path)["config"] == {"a": 1}


@pytest.mark.slow
def test_the_command_line_prints_one_line_and_debug_shows_the_traceback(tmp_path, checkpoint):
    env = {**os.environ, "PYTHONPATH": str(ROOT), "HF_HUB_OFFLINE": "1"}
    env.pop("PNA_DEBUG", None)
    bad = _truncated_copy(checkpoint, tmp_path / "final.pt")
    commands = [["train", "--config", "voc/nonexistent"], ["evaluate", "--checkpoint", str(bad)]]
    for command in commands:
        done = subprocess.run([sys.executable, "-m", "pna", *command], env=env, capture_output=True, text=True,
                              cwd=tmp_path)
        assert done.returncode == 1 and "Traceback" not in done.stderr, done.stderr
        line = [text for text in done.stderr.splitlines() if "error:" in text]
        assert len(line) == 1 and line[0].startswith(f"pna {command[0]}: error: "), done.stderr
    debug = subprocess.run([sys.executable, "-m", "pna", "train", "--config", "voc/nonexistent", "--debug"],
                           env=env, capture_output=True, text=True, cwd=tmp_path)
    assert debug.returncode == 1 and "Traceback" in debug.stderr and "unknown config 'voc/nonexistent'" in debug.stderr


def test_data_prep_errors_are_one_line_and_help_lists_debug(tmp_path):
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    env.pop("PNA_DEBUG", None)
    (tmp_path / "land-train").mkdir()
    done = subprocess.run([sys.executable, "-m", "data_prep.deepglobe", "--root", str(tmp_path)], env=env,
                          capture_output=True, text=True, cwd=tmp_path)
    assert done.returncode == 1 and "Traceback" not in done.stderr, done.stderr
    assert done.stderr.startswith("python -m data_prep.deepglobe: error: ") and str(tmp_path) in done.stderr
    helped = subprocess.run([sys.executable, "-m", "data_prep.deepglobe", "--help"], env=env,
                            capture_output=True, text=True, cwd=tmp_path)
    assert helped.returncode == 0 and "--debug" in helped.stdout


def test_help_of_run_mentions_debug(capsys):
    import argparse

    def main(argv):
        argparse.ArgumentParser(prog="demo").parse_args(argv)

    with pytest.raises(SystemExit):
        run_main(main, ["--help"])
    assert "--debug" in capsys.readouterr().out
