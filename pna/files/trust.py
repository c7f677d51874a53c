"""Files the user trusts enough to unpickle without restrictions: an explicit, per-file opt-in.

The trusted set lives in the environment variable ``PNA_TRUSTED_FILES`` (paths separated by
``os.pathsep``), so that it reaches every process started from this one: torchrun's ranks, the
papermill kernels of ``pna reproduce``, a notebook's data-loader workers. ``pna train`` /
``pna evaluate`` fill it from ``--trust-file PATH`` (repeatable), the notebooks from their
``trust_files`` parameter (:func:`pna.analysis.experiments.run_rows`), Python callers with
:func:`trusting`. Paths are compared resolved (symlinks and ``..`` followed), so ``./R-52.pkl``
and ``/weights/R-52.pkl`` name the same file.

Example::

    >>> import tempfile
    >>> path = Path(tempfile.mkdtemp()) / "R-52.pkl"; path.touch()
    >>> is_trusted(path)
    False
    >>> with trusting([path]):
    ...     is_trusted(path), is_trusted(path.parent / "." / "R-52.pkl")
    (True, True)
    >>> is_trusted(path)
    False
"""
from __future__ import annotations

import os
from contextlib import contextmanager
from pathlib import Path
from typing import Iterable, Iterator

TRUST_ENV = "PNA_TRUSTED_FILES"


def _resolved(path: str | Path) -> Path:
    return Path(path).expanduser().resolve()


def trusted_files() -> list[Path]:
    """The trusted files (resolved), in the order they were trusted."""
    return [_resolved(p) for p in os.environ.get(TRUST_ENV, "").split(os.pathsep) if p]


def is_trusted(path: str | Path) -> bool:
    """Whether the user opted in to unpickling ``path`` without restrictions."""
    return _resolved(path) in trusted_files()


def trust(paths: Iterable[str | Path]) -> None:
    """Add ``paths`` to the trusted files of this process and the processes it starts.

    A path that is no file is an error: a mistyped ``--trust-file`` must not pass unnoticed.
    """
    known = trusted_files()
    for path in paths:
        resolved = _resolved(path)
        if not resolved.is_file():
            raise FileNotFoundError(f"trusted file not found: {path} (--trust-file / trust_files names a file)")
        if resolved not in known:
            known.append(resolved)
    if known:
        os.environ[TRUST_ENV] = os.pathsep.join(map(str, known))


@contextmanager
def trusting(paths: Iterable[str | Path] | None) -> Iterator[None]:
    """Trust ``paths`` (None: none) inside the ``with`` block; the previous trusted set is restored after."""
    before = os.environ.get(TRUST_ENV)
    try:
        trust(paths or ())
        yield
    finally:
        if before is None:
            os.environ.pop(TRUST_ENV, None)
        else:
            os.environ[TRUST_ENV] = before
