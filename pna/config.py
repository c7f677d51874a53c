"""Configs: the public entry point (the implementation lives in :mod:`pna.configs`).

Example::

    >>> from pna.config import load_config
    >>> load_config("voc/fcn_r50_os32", "smoke").data.dataset
    'synthetic'
"""
from pna.configs import *  # noqa: F401,F403
from pna.configs import __all__  # noqa: F401
