"""A fresh clone stays clean: the committed notebooks are in the form git's nbstripout filter gives.

`make` installs the filter (`Makefile`, `.gitattributes`); git then runs every notebook through it
when it compares the working tree with the index. A committed notebook the filter would change
shows up as modified on a clone nobody touched.
"""
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb"))


def _filter_arguments() -> list[str]:
    """The arguments the Makefile gives the clean filter (after the nbstripout executable)."""
    match = re.search(r'git config filter\.nbstripout\.clean "\$\(NBSTRIPOUT\)([^"]*)"', (ROOT / "Makefile").read_text())
    assert match, "Makefile no longer sets filter.nbstripout.clean to $(NBSTRIPOUT) [args]"
    return match.group(1).split()


def test_gitattributes_send_notebooks_through_the_filter():
    lines = (ROOT / ".gitattributes").read_text().splitlines()
    assert "*.ipynb filter=nbstripout" in lines


@pytest.mark.parametrize("notebook", NOTEBOOKS, ids=lambda p: p.name)
def test_committed_notebook_is_what_the_clean_filter_gives(notebook):
    original = notebook.read_bytes()
    # as git runs a clean filter: the file on stdin, the cleaned file on stdout
    done = subprocess.run([sys.executable, "-m", "nbstripout", *_filter_arguments()], input=original,
                          capture_output=True, check=True)
    assert done.stdout == original, (f"{notebook.name} is not in the filter's form: run `make normalize-notebooks` "
                                     "and commit the result")
