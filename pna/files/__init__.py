"""Reading files from elsewhere (weights, the authors' models, checkpoints) without running their code.

A pickle can carry code that runs when it is unpickled. Every weight or checkpoint file pna reads
goes through :func:`load_file`, which builds only data (tensors, numeric numpy arrays, dicts, lists,
numbers, strings), allocates no more than the file's size allows, and refuses anything else with a
one-line :class:`UnsafeFileError` naming the file and the cause (a file it cannot read at all:
:class:`DamagedFileError`); the layers are described in :mod:`pna.files.safe_load`. A file the user
trusts by name (``--trust-file PATH``, a notebook's ``trust_files``, ``PNA_TRUSTED_FILES``,
:func:`trusting`) is read with the unrestricted loader instead, with a warning. safetensors files
hold no pickle: :func:`check_safetensors` bounds their header and tensors before the library reads them.

This room is below ``models/``: the backbone weight reader (``pna.models.backbones.checkpoint_io``)
and the training checkpoints (``pna.engine.checkpoint``) both call it.

Example::

    >>> import tempfile, torch
    >>> path = Path(tempfile.mkdtemp()) / "w.pth"
    >>> torch.save({"state_dict": {"conv.weight": torch.ones(2)}}, path)
    >>> load_file(path)
    {'state_dict': {'conv.weight': tensor([1., 1.])}}
"""
from pathlib import Path

from pna.files.refusals import DamagedFileError, UnsafeFileError
from pna.files.safe_load import check_safetensors, load_file
from pna.files.trust import TRUST_ENV, is_trusted, trust, trusted_files, trusting

__all__ = ["TRUST_ENV", "DamagedFileError", "UnsafeFileError", "check_safetensors", "is_trusted", "load_file",
           "trust", "trusted_files", "trusting"]
