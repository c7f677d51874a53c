"""What every command shares (`pna <command>`, `python -m data_prep.<name>`): one clear line on error, the traceback on demand,
and "unknown name" errors that say what was probably meant.

``run_main(main)`` calls an entry point's ``main(argv)`` the way the command line does: an exception
becomes one line on stderr and exit status 1; ``--debug`` (or ``PNA_DEBUG=1``) lets the traceback
through. ``main`` itself still raises, so Python callers and tests see the exception.

Example::

    >>> error = unknown_name_error("model", "fcn_r50_os32_pan", ["fcn_r50_os32", "fcn_r50_os32_pna",
    ...                            "fpn_r50", "psp_r101_os8", "upernet_r101", "upernet_swin_t",
    ...                            "fpn_r101", "fcn_r50_os8", "deeplabv3_r50_os8"], "pna.models.list_models()")
    >>> print(error)
    unknown model 'fcn_r50_os32_pan'; nearest: 'fcn_r50_os32_pna', 'fcn_r50_os32', 'fcn_r50_os8'; all 9: pna.models.list_models()
    >>> def main(argv):
    ...     raise FileNotFoundError("checkpoint runs/x/final.pt not found")
    >>> run_main(main, [], prog="pna demo")  # stderr: pna demo: error: checkpoint ...
    1
"""
from __future__ import annotations

import difflib
import os
import sys
from typing import Callable, Iterable, Sequence

# Exceptions whose message is written for the user: shown without their type.
USER_ERRORS = (ValueError, FileNotFoundError, FileExistsError, NotADirectoryError, IsADirectoryError,
               PermissionError)
SHORT_LIST = 8  # up to this many choices are listed in full


def unknown_name_error(kind: str, name: object, choices: Iterable[str], where: str) -> ValueError:
    """``ValueError("unknown <kind> <name>; ...")`` naming the closest ``choices`` (all of them when
    there are few) and ``where`` the full list is (a function to call, a file to read)."""
    choices = [str(c) for c in choices]
    if len(choices) <= SHORT_LIST:
        return ValueError(f"unknown {kind} {name!r}; expected one of {', '.join(choices)}")
    text = str(name)
    near = difflib.get_close_matches(text, choices, n=5, cutoff=0.6)
    if not near:  # a fragment of a long name ("os32_pna") is no close match, but is a good hint
        near = [c for c in choices if text and (text in c or c in text)][:5]
    hint = f"nearest: {', '.join(map(repr, near))}" if near else "no close match"
    return ValueError(f"unknown {kind} {name!r}; {hint}; all {len(choices)}: {where}")


def describe(error: BaseException) -> str:
    """One line for ``error``: its message (with its type unless it is a user error)."""
    lines = [line.strip() for line in str(error).strip().splitlines() if line.strip()]
    message = lines[0] if lines else ""
    if len(lines) > 1:
        message += " ..."
    if isinstance(error, KeyError) and message.startswith("'"):
        message = f"missing key {message}"
    if not isinstance(error, USER_ERRORS) or not message:
        message = f"{type(error).__name__}: {message}" if message else type(error).__name__
    return message


def _prog(main: Callable) -> str:
    module = getattr(main, "__module__", "") or ""
    if module == "__main__":
        module = getattr(sys.modules.get("__main__"), "__spec__", None)
        module = module.name if module is not None else os.path.basename(sys.argv[0])
    return f"python -m {module}" if module else "pna"


def run_main(main: Callable[[list[str]], object], argv: Sequence[str] | None = None, prog: str | None = None) -> int:
    """Exit status of ``main(argv)`` (``sys.argv[1:]`` by default), errors as one line on stderr."""
    argv = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in argv or os.environ.get("PNA_DEBUG", "") not in ("", "0")
    argv = [a for a in argv if a != "--debug"]
    prog = prog or _prog(main)
    try:
        status = main(argv)
    except SystemExit as done:  # argparse's --help: add the option run_main() itself handles
        if done.code in (0, None) and {"-h", "--help"} & set(argv):
            print("\n  --debug               on error, show the full traceback (or set PNA_DEBUG=1)")
        raise
    except KeyboardInterrupt:
        if debug:
            raise
        print(f"{prog}: interrupted", file=sys.stderr)
        return 130
    except Exception as error:  # noqa: BLE001 - the point: no traceback for the user
        if debug:
            raise
        print(f"{prog}: error: {describe(error)}  (--debug shows the traceback)", file=sys.stderr)
        return 1
    return status if isinstance(status, int) else 0
