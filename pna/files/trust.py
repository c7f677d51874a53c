"""Files the user trusts enough to unpickle without restrictions: an explicit, per-file opt-in.

The trusted set lives in the environment variable ``PNA_TRUSTED_FILES`` so that it reaches every
process started from this one: torchrun's ranks, the papermill kernels of ``pna reproduce``, a
notebook's data-loader workers. Its value is a JSON list of absolute paths
(``["/weights/R-52.pkl", "/w/a:b.pkl"]``): no character of a path (``:``, ``,``, a newline, a quote)
can split an entry, and a child process started in another folder reads the same files. A
hand-written value that is no JSON list is still read as paths separated by ``os.pathsep`` (``:``),
but only absolute ones: a relative entry is an error, since the child reading it cannot know the
folder it was written in. ``pna train`` / ``pna evaluate`` fill it from ``--trust-file PATH``
(repeatable), the notebooks from their ``trust_files`` parameter
(:func:`pna.analysis.experiments.run_rows`), Python callers with :func:`trusting`; :func:`trust`
makes each path absolute against the folder it was said in. Paths are compared resolved (symlinks
and ``..`` followed), so ``./R-52.pkl`` and ``/weights/R-52.pkl`` name the same file.

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

import json
import os
from contextlib import contextmanager
from pathlib import Path
from typing import Iterable, Iterator

TRUST_ENV = "PNA_TRUSTED_FILES"


def _resolved(path: str | Path) -> Path:
    return Path(path).expanduser().resolve()


def _entries(value: str) -> list[str]:
    """The paths in a value of ``PNA_TRUSTED_FILES``: a JSON list, or a hand-written ``:``-separated list."""
    if value.lstrip().startswith("["):
        try:
            entries = json.loads(value)
        except json.JSONDecodeError as error:
            raise ValueError(f"{TRUST_ENV} is not a valid JSON list of paths ({error})") from None
        if not all(isinstance(entry, str) for entry in entries):
            raise ValueError(f"{TRUST_ENV} must be a JSON list of path strings, got {value[:200]!r}")
        return entries
    entries = [entry for entry in value.split(os.pathsep) if entry]
    relative = [entry for entry in entries if not Path(entry).expanduser().is_absolute()]
    if relative:
        raise ValueError(f"{TRUST_ENV} holds the relative path {relative[0]!r}: write absolute paths (a child "
                         f"process cannot know the folder it was meant against), as a JSON list such as "
                         f'["/weights/R-52.pkl"] when a path holds {os.pathsep!r}')
    return entries


def trusted_files() -> list[Path]:
    """The trusted files (resolved), in the order they were trusted."""
    return [_resolved(entry) for entry in _entries(os.environ.get(TRUST_ENV, ""))]


def is_trusted(path: str | Path) -> bool:
    """Whether the user opted in to unpickling ``path`` without restrictions."""
    return _resolved(path) in trusted_files()


def trust(paths: Iterable[str | Path]) -> None:
    """Add ``paths`` (absolute, resolved against the current folder) to the trusted files of this
    process and of the processes it starts.

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
        os.environ[TRUST_ENV] = json.dumps([str(path) for path in known])


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
