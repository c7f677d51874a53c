"""The errors of reading a file from elsewhere: each one line naming the file and the cause.

Inside the reader, the layers raise :class:`Refused` (the file asks for something a weights file
never needs: a type outside the allow-list, a crafted object, more memory than the file holds) or
let the libraries' own exceptions through; :func:`load_error` turns either into the one-line error
the user sees:

* :class:`UnsafeFileError` (refused: ``refused to unpickle NAME: not a weights type``, ``refused:
  <crafted object>``, ``refused: it asks for N bytes ...``), with the way out (trusting the file)
  where trusting can help;
* :class:`DamagedFileError` (``cannot be read: damaged, truncated or not a weights file (<cause>)``)
  for everything else: a truncated zip, an EOF inside the pickle, bytes that are no UTF-8 where the
  pickle says text, a storage smaller than its tensor. ``cause`` holds the part after the file.

Both are ValueErrors: the command line prints them as user errors (``pna.errors.USER_ERRORS``).
"""
from __future__ import annotations

import re
import reprlib
from pathlib import Path

TRUST_HINT = ("if you trust this file, pass --trust-file {path} (notebooks: trust_files=[...]; Python: "
              "pna.files.trusting([...]); or the PNA_TRUSTED_FILES environment variable)")
MAX_CAUSE_CHARS = 300  # a library's message is cut here: one readable line, not a dump of the file


class UnsafeFileError(ValueError):
    """A file refused without being read to the end: it needs a type outside the allow-list, holds an
    object no weights file holds (crafted), or asks for more memory than it could hold."""


class DamagedFileError(ValueError):
    """A file that cannot be read: damaged, truncated, or not a weights file at all."""

    def __init__(self, message: str, cause: str):
        super().__init__(message)
        self.cause = cause


class Refused(Exception):
    """Raised inside reading: ``kind`` is 'type' (a global not on the allow-list, ``what`` its name),
    'crafted' (an object a weights file never holds) or 'size' (an allocation beyond the bound)."""

    KINDS = ("type", "crafted", "size")

    def __init__(self, kind: str, what: str):
        assert kind in self.KINDS, kind
        what = "".join(c if c.isprintable() else repr(c)[1:-1] for c in what)  # a name may hold a newline
        what = what if len(what) <= MAX_CAUSE_CHARS else what[:MAX_CAUSE_CHARS - 3] + "..."
        super().__init__(f"{kind}: {what}")
        self.kind, self.what = kind, what

    @property
    def trust_helps(self) -> bool:
        """Whether reading the file unrestricted could succeed (a size refusal stays: no weights file
        asks for more memory than its own bytes)."""
        return self.kind != "size"


_SHORT = reprlib.Repr()
_SHORT.maxlevel, _SHORT.maxstring, _SHORT.maxother = 3, 40, 40  # a file's object, shown in a message


def short(value: object) -> str:
    """A file's object as a message shows it: a few levels and items, never the whole (it may be huge or deep)."""
    return _SHORT.repr(value)


def one_line(text: str) -> str:
    """``text`` on one line, cut to :data:`MAX_CAUSE_CHARS`."""
    text = re.sub(r"\s+", " ", str(text)).strip()
    return text if len(text) <= MAX_CAUSE_CHARS else text[:MAX_CAUSE_CHARS - 3] + "..."


def cause_of(error: BaseException) -> str:
    """What went wrong, in one line, from a library's exception (its type when it says nothing)."""
    if isinstance(error, EOFError):
        return "it ends in the middle of the data (EOFError)"
    if isinstance(error, UnicodeDecodeError):
        return (f"bytes that are not {error.encoding} text where the file says text "
                f"(byte 0x{error.object[error.start]:02x} at {error.start} of a {len(error.object)}-byte string)")
    if isinstance(error, RecursionError):
        return "objects nested too deeply"
    if isinstance(error, MemoryError):
        return "it asks for more memory than there is (MemoryError)"
    text = one_line(str(error))
    return f"{type(error).__name__}: {text}" if text else type(error).__name__


def refusal_error(path: str | Path, refused: Refused, pickled: bool = True) -> UnsafeFileError:
    """The one-line error for ``path`` refused by one of the reader's layers (``pickled``: trusting it helps)."""
    hint = TRUST_HINT.format(path=path) if pickled else "safetensors files are never read unchecked"
    if refused.kind == "type":
        return UnsafeFileError(f"{path}: refused to unpickle {refused.what}: not a weights type (unpickling it "
                               f"could run code stored in the file); {hint}")
    if refused.kind == "crafted":
        return UnsafeFileError(f"{path}: refused: {refused.what} (no weights file holds this: the file is "
                               f"crafted or damaged); {hint}")
    return UnsafeFileError(f"{path}: refused: {refused.what} (a weights file holds every byte it loads: "
                           "this one is crafted or damaged)")


def damage_error(path: str | Path, error: BaseException) -> DamagedFileError:
    """The one-line error for ``path`` that a library could not read."""
    cause = cause_of(error)
    return DamagedFileError(f"{path}: cannot be read: damaged, truncated or not a weights file ({cause})", cause)
