"""Live curves in a notebook (pna.analysis.live_curves): in a real kernel, run by nbclient as papermill
and nbval run notebooks, a log that grows while the cell runs gives one picture, updated in place, and
the executed notebook keeps the final one (the PNG of the whole log)."""
import base64
import json

import nbformat
import pytest
from nbclient import NotebookClient

from pna.analysis.live_curves import LiveCurves, draw_curves
from pna.engine.watch import read_run_log

ENTRIES = [{"type": "train", "iter": i, "loss": 3 - i / 10, "parts": {"P0": 2 - i / 20, "P4": 1.5 - i / 15}, "lr": 1e-3}
           for i in range(1, 11)] + [{"type": "eval", "iter": 10, "mIoU": {"P0": 0.3, "P4": 0.6},
                                      "boundary_iou": {"P0": 0.1, "P4": 0.4}, "seconds": 1.0}]


def _png(fig) -> bytes:
    import io

    buffer = io.BytesIO()
    fig.savefig(buffer, format="png")
    return buffer.getvalue()


@pytest.mark.slow
def test_a_kernel_shows_one_picture_updated_in_place_and_keeps_the_final_one(tmp_path):
    log = tmp_path / "log.jsonl"
    cell = f"""
import json
from pna.analysis.live_curves import LiveCurves
entries = {json.dumps(ENTRIES)}
with LiveCurves("demo", {str(log)!r}, total=10, every=0) as live:   # in a kernel: enabled
    for entry in entries:
        with open({str(log)!r}, "a") as f:
            f.write(json.dumps(entry) + "\\n")
        live.poll(entry)
"""
    notebook = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(cell)])
    NotebookClient(notebook, timeout=120, kernel_name="python3").execute()
    outputs = notebook.cells[0].outputs
    pictures = [o for o in outputs if "image/png" in o.get("data", {})]
    assert len(pictures) == 1, [o.get("output_type") for o in outputs]  # one display, updated 11 times
    expected = _png(draw_curves(read_run_log(log), "demo: iteration 10 of 10"))
    assert base64.b64decode(pictures[0]["data"]["image/png"]) == expected


def test_outside_a_kernel_it_reads_and_draws_nothing(tmp_path):
    log = tmp_path / "log.jsonl"
    log.write_text("".join(json.dumps(e) + "\n" for e in ENTRIES))
    live = LiveCurves("demo", log, total=10)  # pytest's process: no kernel
    live.poll()
    live.close()
    assert not live.enabled and live.entries == [] and live.handle is None


def test_a_fresh_log_replaces_what_was_read_and_a_partial_line_waits(tmp_path):
    log = tmp_path / "log.jsonl"
    live = LiveCurves("demo", log, total=10, enabled=True, every=1e9)  # never draws by itself
    log.write_text(json.dumps(ENTRIES[0]) + "\n" + json.dumps(ENTRIES[1])[:10])
    live._read()
    assert [e["iter"] for e in live.entries] == [1]
    with open(log, "a") as f:
        f.write(json.dumps(ENTRIES[1])[10:] + "\n")
    live._read()
    assert [e["iter"] for e in live.entries] == [1, 2]
    log.unlink()
    log.write_text(json.dumps(ENTRIES[5]) + "\n")  # a fresh start wrote a new log
    live._read()
    assert [e["iter"] for e in live.entries] == [6]
