"""Progress: a widget bar in JupyterLab, a bar in a terminal, one line per loop where nobody watches
(papermill, nbval, logs) - so an executed notebook does not hold a line per update."""
import json
import subprocess
import sys
import textwrap
from pathlib import Path

import nbformat
import pytest

from pna.engine import progress
from pna.engine.progress import Progress, progress_mode, track

ROOT = Path(__file__).resolve().parents[1]


def test_lines_mode_prints_one_line_when_the_loop_ends(capsys):
    with Progress(total=50, desc="fcn_r50_os32_pna", mode="lines") as bar:
        for i in range(50):
            bar.update()
            if i == 10:
                assert capsys.readouterr() == ("", "")  # nothing while it runs
        bar.set_postfix(loss="0.512", lr="1.00e-03")
    out = capsys.readouterr().out
    assert out.count("\n") == 1
    assert out.startswith("fcn_r50_os32_pna: 50/50 in ") and out.rstrip().endswith(" s, loss=0.512, lr=1.00e-03")


def test_a_resumed_loop_says_where_it_resumed(capsys):
    bar = Progress(total=10, desc="run", initial=6, mode="lines")
    for _ in range(4):
        bar.update()
    bar.close()
    bar.close()  # twice: still one line
    assert capsys.readouterr().out.startswith("run: 10/10 (resumed at 6) in ")


def test_disabled_or_off_prints_nothing(capsys, monkeypatch):
    for _ in track(range(5), "eval", enabled=False):
        pass
    monkeypatch.setenv("PNA_PROGRESS", "off")
    for _ in track(range(5), "eval"):
        pass
    assert capsys.readouterr() == ("", "")


def test_environment_overrides_and_is_checked(monkeypatch):
    monkeypatch.setenv("PNA_PROGRESS", "Lines")
    assert progress_mode() == "lines"
    monkeypatch.setenv("PNA_PROGRESS", "fancy")
    with pytest.raises(ValueError, match="PNA_PROGRESS='fancy'"):
        progress_mode()


def test_the_guess(monkeypatch):
    monkeypatch.delenv("PNA_PROGRESS", raising=False)
    monkeypatch.setattr(progress, "_in_kernel", lambda: True)
    monkeypatch.setattr(progress, "_headless_runner", lambda: None)
    assert progress_mode() == "widget"  # JupyterLab
    monkeypatch.setattr(progress, "_headless_runner", lambda: "papermill")
    assert progress_mode() == "lines"
    monkeypatch.setattr(progress, "_in_kernel", lambda: False)
    monkeypatch.setattr(sys.stderr, "isatty", lambda: False)
    assert progress_mode() == "lines"  # a log file
    monkeypatch.setattr(sys.stderr, "isatty", lambda: True)
    assert progress_mode() == "bar"


def test_a_widget_bar_without_ipywidgets_falls_back_to_a_line(monkeypatch, capsys):
    import tqdm.notebook
    monkeypatch.setattr(tqdm.notebook, "IProgress", None)  # what tqdm sets when ipywidgets is missing
    with Progress(total=3, desc="w", mode="widget") as bar:
        bar.update(3)
    assert bar.mode == "off" and capsys.readouterr().out.startswith("w: 3/3 in ")


def test_the_executor_is_found_among_the_kernels_parents(tmp_path):
    """A process started by a program called ...papermill... sees it; two levels further up, not."""
    probe = f"import sys; sys.path.insert(0, {str(ROOT)!r}); from pna.engine.progress import _headless_runner; print(_headless_runner())"
    launcher = "import subprocess, sys; sys.exit(subprocess.run([sys.executable, *sys.argv[1:]]).returncode)"
    (tmp_path / "papermill_like.py").write_text(launcher)
    (tmp_path / "lab_server.py").write_text(launcher)
    (tmp_path / "kernel_launcher.py").write_text(launcher)
    direct = subprocess.run([sys.executable, tmp_path / "papermill_like.py", "-c", probe], capture_output=True, text=True)
    assert direct.stdout.strip() == "papermill", direct.stderr
    # pytest -> papermill_like -> lab_server -> kernel_launcher -> probe: the executor is 3 levels up
    far = subprocess.run([sys.executable, tmp_path / "papermill_like.py", tmp_path / "lab_server.py",
                          tmp_path / "kernel_launcher.py", "-c", probe], capture_output=True, text=True)
    assert far.stdout.strip() == "None", far.stderr


@pytest.mark.slow
def test_an_executed_notebook_holds_one_line_per_loop(tmp_path):
    """Under papermill (a kernel without a frontend) a 300-step loop leaves one output line."""
    notebook = nbformat.v4.new_notebook()
    notebook.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    notebook.cells = [nbformat.v4.new_code_cell(textwrap.dedent(f"""
        import sys; sys.path.insert(0, {str(ROOT)!r})
        from pna.engine.progress import Progress, progress_mode
        print("mode", progress_mode())
        with Progress(total=300, desc="demo") as bar:
            for _ in range(300):
                bar.update()
    """))]
    source, executed = tmp_path / "in.ipynb", tmp_path / "out.ipynb"
    nbformat.write(notebook, source)
    env_clean = {k: v for k, v in __import__("os").environ.items() if k != "PNA_PROGRESS"}
    done = subprocess.run([sys.executable, "-m", "papermill", str(source), str(executed), "--no-progress-bar"],
                          capture_output=True, text=True, env=env_clean, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    outputs = nbformat.read(executed, as_version=4).cells[0].outputs
    text = "".join(o.get("text", "") for o in outputs)
    assert text.splitlines()[0] == "mode lines"
    assert len(text.splitlines()) == 2 and text.splitlines()[1].startswith("demo: 300/300 in "), json.dumps(outputs)[:500]
    assert all(o.output_type == "stream" for o in outputs)  # no widget


@pytest.mark.slow
def test_training_reports_one_line_per_run_and_run_rows_a_summary(tmp_path, monkeypatch, capsys):
    import warnings

    from pna.analysis.experiments import run_rows
    monkeypatch.setenv("PNA_PROGRESS", "lines")
    monkeypatch.setenv("PNA_RUNS_DIR", str(tmp_path / "runs"))
    overrides = [f"data.root={tmp_path / 'synthetic'}", "data.options={'num_train': 8, 'num_val': 2, 'size': 32, 'seed': 0}",
                 "data.crop=(32, 32)", "train.log_interval=1", "eval.batch_size=2",
                 "model.overrides.embed_dims=(32, 32, 32, 32)", "model.overrides.head_channels=16",
                 "model.overrides.aux_channels=16", "model.overrides.window_size=3"]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        run_rows("table1", ["fcn_r50_os32_pna"], iters=5, batch_size=2, out_dir=str(tmp_path / "results"),
                 overrides=overrides)
    lines = capsys.readouterr().out.splitlines()
    assert [line for line in lines if line.startswith("fcn_r50_os32_pna: ")][0].startswith("fcn_r50_os32_pna: 5/5 in ")
    assert len(lines) == 4, lines  # [1/1] ..., "training in ...", the run's line, the summary
    assert lines[-1].startswith("table1: 1 row(s) in ") and lines[-1].endswith("1 trained, 0 reused")


def test_lines_mode_can_add_evenly_spaced_lines_while_it_runs(capsys, monkeypatch):
    monkeypatch.setenv("PNA_PROGRESS_LINES", "4")  # 4 lines over 10 steps: every ceil(10 / 4) = 3 steps
    with Progress(total=10, desc="row", initial=1, mode="lines") as bar:
        for _ in range(9):
            bar.update()
    lines = capsys.readouterr().out.splitlines()
    assert [line.split(" ")[1] for line in lines] == ["3/10", "6/10", "9/10", "10/10"]  # the last: the summary
