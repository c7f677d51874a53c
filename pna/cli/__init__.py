"""The command line: ``pna <command> [options]`` (the console script) or ``python -m pna <command>``.

Each command is one module of this folder and a thin entry point over the library: ``HELP`` (its
one-line summary), ``add_arguments(parser)`` (its options) and ``run(args) -> int`` (which calls
``pna.engine``, ``pna.analysis`` or ``pna.tools``). Errors print as one line; ``--debug`` (or
``PNA_DEBUG=1``) shows the traceback. Under ``torchrun`` use ``-m pna train ...``.

Example::

    >>> list(COMMANDS)[:4]
    ['train', 'evaluate', 'rehearse', 'reproduce']
    >>> build_parser().parse_args(["train", "--config", "voc/fcn_r50_os32", "--set", "a=1", "--set", "b=2"]).set
    ['a=1', 'b=2']
"""
from __future__ import annotations

import argparse
import sys
from importlib import import_module
from typing import Sequence

from pna.errors import run_main

# command -> module of this folder, in the order `pna --help` lists them
COMMANDS = {
    "train": "train", "evaluate": "evaluate", "rehearse": "rehearse", "reproduce": "reproduce",
    "cost": "cost", "fidelity": "fidelity", "prepare": "prepare", "plan": "plan", "submit": "submit",
    "predict": "predict", "runs": "runs",
}


def _module(command: str):
    return import_module(f"pna.cli.{COMMANDS[command]}")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="pna", description="Progressive Neighborhood Aggregation (AAAI 2023), reproduced: the commands.",
        epilog="`pna <command> --help` lists a command's options; --debug shows the traceback of an error.")
    commands = parser.add_subparsers(dest="command", metavar="<command>", required=True)
    for name in COMMANDS:
        module = _module(name)
        sub = commands.add_parser(name, help=module.HELP, description=module.__doc__,
                                  formatter_class=argparse.RawDescriptionHelpFormatter)
        module.add_arguments(sub)
    return parser


def dispatch(argv: Sequence[str]) -> int:
    """Parse ``argv`` (without the program name) and run the command it names."""
    args = build_parser().parse_args(list(argv))
    return _module(args.command).run(args)


def main(argv: Sequence[str] | None = None) -> int:
    """The console script ``pna``: errors as one line on stderr, the exit status returned."""
    argv = list(sys.argv[1:] if argv is None else argv)
    command = next((a for a in argv if not a.startswith("-")), None)
    prog = f"pna {command}" if command in COMMANDS else "pna"
    return run_main(dispatch, argv, prog=prog)
