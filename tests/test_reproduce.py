"""``pna reproduce``: the timing table is written for a whole run, never by a subset."""
import csv

import pna.tools.reproduce as reproduce


def _fake_run(notebook, out_dir, parameters):
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / notebook.name).write_text("{}" * 100)
    return 1.5


def test_a_subset_leaves_the_whole_runs_timings_alone(tmp_path, monkeypatch):
    monkeypatch.setenv("PNA_RESULTS_DIR", str(tmp_path))
    monkeypatch.setattr(reproduce, "run_notebook", _fake_run)
    reproduce.reproduce()
    table = tmp_path / "benchmarks" / "reproduce_smoke.csv"
    lines = list(csv.reader(table.open()))
    assert lines[0] == ["notebook", "seconds", "executed_kB"] and lines[-1][0] == "total"
    assert len(lines) == len(reproduce.find_notebooks()) + 2
    before = table.read_text()
    reproduce.reproduce(only=["00"])
    assert table.read_text() == before


def test_the_tables_notebook_runs_after_every_notebook_it_tabulates():
    names = [nb.name for nb in reproduce.find_notebooks()]
    assert names[-1] == "07_tables_and_figures.ipynb"
    assert "08_refiners.ipynb" in names and names.index("08_refiners.ipynb") < len(names) - 1
    assert names[:-1] == sorted(names[:-1])
