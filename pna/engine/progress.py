"""Progress of long loops, shown the way the place it runs in can show it.

* JupyterLab (a kernel with a frontend): a widget bar (tqdm + ipywidgets);
* a terminal: a tqdm bar on stderr;
* papermill, nbconvert, nbval (a kernel nobody looks at), logs and pipes: nothing while the loop
  runs, then one line when it ends. An executed notebook thus holds one line per run instead of
  one per update (a text bar in a notebook is a new output line at every refresh).

``PNA_PROGRESS=widget|bar|lines|off`` overrides the guess. ``PNA_PROGRESS_LINES=N`` adds, in the
lines mode, N evenly spaced lines while the loop runs (a run streamed into a notebook from another
process, :mod:`pna.engine.launch`, shows its progress that way).

Example::

    >>> import os; os.environ["PNA_PROGRESS"] = "lines"
    >>> with Progress(total=3, desc="demo") as bar:
    ...     for _ in range(3):
    ...         bar.update()
    ...     bar.set_postfix(loss="0.5")                     # doctest: +ELLIPSIS
    demo: 3/3 in ... s, loss=0.5
    >>> del os.environ["PNA_PROGRESS"]
"""
from __future__ import annotations

import os
import sys
import time
from typing import Iterable, Iterator, TypeVar

MODES = ("widget", "bar", "lines", "off")
# Programs that run a kernel with no one watching it: a widget or text bar only bloats their output.
HEADLESS_RUNNERS = ("papermill", "jupyter-nbconvert", "nbconvert", "nbclient", "pytest", "py.test")

T = TypeVar("T")


def _in_kernel() -> bool:
    shell = sys.modules.get("IPython") and sys.modules["IPython"].get_ipython()
    return shell is not None and hasattr(shell, "kernel")


def in_kernel() -> bool:
    """Whether this runs in an IPython kernel (JupyterLab, papermill, nbval): where a display can be updated."""
    return _in_kernel()


def program_name(cmdline: list[str]) -> str:
    """The program a command line runs: the script's or ``-m`` module's name after the interpreter.

    >>> program_name(["/venv/bin/python", "/venv/bin/papermill", "in.ipynb"]), program_name(["python3", "-m", "pytest"])
    ('papermill', 'pytest')
    """
    tokens = list(cmdline)
    if tokens and os.path.basename(tokens[0]).startswith("python"):
        tokens = [t for t in tokens[1:] if t not in ("-u", "-B", "-E", "-s", "-I")]
    if tokens[:1] == ["-m"]:
        tokens = tokens[1:]
    name = os.path.basename(tokens[0]) if tokens else ""
    return name[:-3] if name.endswith(".py") else name


def _headless_runner() -> str | None:
    """The notebook executor that started this kernel (its parent, or the parent's parent), if any."""
    try:
        import psutil  # an ipykernel dependency
    except ImportError:
        return None
    try:
        for parent in psutil.Process().parents()[:2]:
            program = program_name(parent.cmdline())
            for name in HEADLESS_RUNNERS:
                if program.startswith(name):
                    return name
    except (psutil.Error, OSError):
        return None
    return None


def progress_mode() -> str:
    """``widget`` / ``bar`` / ``lines`` / ``off``: ``$PNA_PROGRESS``, else a guess (module docstring)."""
    mode = os.environ.get("PNA_PROGRESS", "auto").strip().lower()
    if mode != "auto":
        if mode not in MODES:
            raise ValueError(f"PNA_PROGRESS={mode!r}: expected one of {', '.join(MODES)} or auto")
        return mode
    if _in_kernel():
        return "lines" if _headless_runner() else "widget"
    return "bar" if sys.stderr.isatty() else "lines"


class Progress:
    """A counted loop's progress: ``update()`` per step, ``close()`` (or ``with``) at the end."""

    def __init__(self, total: int, desc: str, initial: int = 0, enabled: bool = True, mode: str | None = None,
                 lines: int | None = None):
        self.total, self.desc, self.n, self.initial = total, desc, initial, initial
        self.mode = (mode or progress_mode()) if enabled else "off"
        lines = int(os.environ.get("PNA_PROGRESS_LINES", "0")) if lines is None else lines
        # lines mode: a line every `every` steps while running (0: only the summary at the end)
        self.every = -(-total // lines) if lines > 0 and total else 0
        self.postfix: dict[str, str] = {}
        self.start = time.perf_counter()
        self.bar = self._make_bar() if self.mode in ("widget", "bar") else None

    def _make_bar(self):
        if self.mode == "widget":
            import tqdm.notebook

            if tqdm.notebook.IProgress is None:  # ipywidgets missing (tqdm: "IProgress not found")
                self.mode = "lines"
                return None
            return tqdm.notebook.tqdm(total=self.total, initial=self.initial, desc=self.desc)
        from tqdm import tqdm
        return tqdm(total=self.total, initial=self.initial, desc=self.desc, dynamic_ncols=True)

    def update(self, n: int = 1) -> None:
        before, self.n = self.n, self.n + n
        if self.bar is not None:
            self.bar.update(n)
        elif self.mode == "lines" and self.every and self.n < self.total and self.n // self.every > before // self.every:
            print(self.summary(), flush=True)

    def set_postfix(self, **values) -> None:
        self.postfix = {k: str(v) for k, v in values.items()}
        if self.bar is not None:
            self.bar.set_postfix(self.postfix)

    def summary(self) -> str:
        seconds = time.perf_counter() - self.start
        extra = "".join(f", {k}={v}" for k, v in self.postfix.items())
        done = f"{self.n}/{self.total}" if self.total else str(self.n)
        resumed = f" (resumed at {self.initial})" if self.initial else ""
        return f"{self.desc}: {done}{resumed} in {seconds:.1f} s{extra}"

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None
        elif self.mode == "lines":
            print(self.summary(), flush=True)
        self.mode = "off"  # closing twice prints once

    def __enter__(self) -> "Progress":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def track(items: Iterable[T], desc: str, total: int | None = None, enabled: bool = True) -> Iterator[T]:
    """Iterate ``items`` with a :class:`Progress` (``total`` defaults to ``len(items)``)."""
    if total is None and hasattr(items, "__len__"):
        total = len(items)
    with Progress(total or 0, desc, enabled=enabled) as bar:
        for item in items:
            yield item
            bar.update()
