"""How a training run stops early: on a signal (preemption) with its state saved, or on a
non-finite loss or gradient without saving anything.

* **SIGTERM / SIGUSR1** (a cluster preempting or timing out a job; ``kill``) and **SIGINT** (Ctrl-C,
  a notebook's "interrupt kernel"): :class:`StopSignals` only notes the signal; the loop finishes the
  step in progress, writes ``last.pt`` at that iteration and raises :class:`TrainingInterrupted`.
  ``pna train`` then exits with :data:`EXIT_INTERRUPTED` (:data:`EXIT_SIGINT` after Ctrl-C); the
  same command (or a requeued job, or the same cell) resumes from ``last.pt``. More signals while it
  stops are only noted: the state being saved is written whole (``last.pt`` is replaced atomically,
  :mod:`pna.engine.checkpoint`; a process killed meanwhile leaves the previous one). Outside the
  loop (building the model, the final evaluation, waiting for a run folder's lock) the same signals
  raise :class:`StopRequested` at once (:class:`RaiseOnSignal`), which ``train`` turns into
  :class:`TrainingInterrupted` naming what is saved, after releasing the run folder's lock.
* **A non-finite loss or gradient** raises :class:`NonFiniteError` (one line: the iteration and the
  outputs whose loss went bad) before the optimiser steps, so no bad update is taken and ``last.pt``
  keeps the last good state; no ``done.json``, no results JSON. With AMP (fp16) the grad scaler skips
  a step whose gradients overflowed and lowers its scale: that is no failure, but
  :data:`MAX_SKIPPED_STEPS` skips in a row are (:class:`SkippedSteps`).
* :func:`check_finite_weights` guards every checkpoint write: a model with non-finite weights is never
  saved over the last good ``last.pt`` (or as ``final.pt``).

Example::

    >>> import os, signal
    >>> with StopSignals() as stop:
    ...     os.kill(os.getpid(), signal.SIGUSR1)
    ...     stop.received
    'SIGUSR1'
"""
from __future__ import annotations

import math
import signal
import threading
from typing import Callable

import torch
from torch import nn

# `pna train`'s exit status after a signal stopped it with its resume state saved: 75 is EX_TEMPFAIL
# of sysexits.h ("temporary failure; the user is invited to retry"): run the same command again.
# submitit jobs (pna.tools.cluster) turn it into a requeue; any other non-zero status is a failure.
EXIT_INTERRUPTED = 75
# After Ctrl-C: 128 + SIGINT, what a shell reports for a process that SIGINT ended.
EXIT_SIGINT = 128 + signal.SIGINT
STOP_SIGNALS = (signal.SIGTERM, signal.SIGUSR1)  # the signals a launcher passes on (pna.engine.launch)
TRAINING_SIGNALS = (*STOP_SIGNALS, signal.SIGINT)  # the signals the training loop stops on
# GradScaler halves its scale at every skipped step (backoff 0.5). 32 skips in a row take it down by
# 2^32 (from its initial 2^16 to 2^-16): gradients that still overflow then are not an fp16 range
# problem but non-finite values, and each skipped step was an iteration without an update.
MAX_SKIPPED_STEPS = 32


def exit_status(signal_name: str | None) -> int:
    """``pna train``'s exit status after ``signal_name`` stopped it with its state saved."""
    return EXIT_SIGINT if signal_name == "SIGINT" else EXIT_INTERRUPTED


class TrainingInterrupted(Exception):
    """A signal stopped training; the resume state of ``iteration`` is in ``path`` (None: nothing saved)."""

    def __init__(self, name: str, iteration: int | None, path, signal_name: str | None):
        self.iteration, self.path, self.signal_name = iteration, path, signal_name
        signalled = signal_name or "a signal to another rank"
        if path is None:
            text = f"{name}: stopped on {signalled} before any training state was saved; the same command starts it"
        else:
            text = (f"{name}: stopped at iteration {iteration} on {signalled}; resume state in {path}; "
                    "the same command (or cell) continues it")
        super().__init__(text)


class StopRequested(BaseException):
    """A stop signal outside the training loop (:class:`RaiseOnSignal`). A BaseException, like
    KeyboardInterrupt, so that no ``except Exception`` on the way swallows it."""

    def __init__(self, signal_name: str):
        self.signal_name = signal_name
        super().__init__(signal_name)


class NonFiniteError(FloatingPointError):
    """A loss, gradient or weight that is NaN or infinite; nothing of the bad state was saved."""


class StopSignals:
    """Within ``with``: SIGTERM and SIGUSR1 (by default; the training loop adds SIGINT) set
    :attr:`received` (the first signal's name) and call ``on_signal`` (if given) instead of ending
    the process; the previous handlers come back on exit. Off the main thread (where Python cannot
    install handlers) it does nothing."""

    def __init__(self, signals=STOP_SIGNALS, on_signal: Callable[[], None] | None = None):
        self.signals, self.on_signal, self.received, self._previous = signals, on_signal, None, {}

    def _note(self, signum, frame) -> None:
        self.received = self.received or signal.Signals(signum).name
        if self.on_signal is not None:
            self.on_signal()

    def __enter__(self) -> "StopSignals":
        if threading.current_thread() is threading.main_thread():
            self._previous = {s: signal.signal(s, self._note) for s in self.signals}
        return self

    def __exit__(self, *exc) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
        self._previous = {}


class RaiseOnSignal(StopSignals):
    """Within ``with``: the signals (SIGTERM and SIGUSR1 by default) raise :class:`StopRequested`
    where the program is."""

    def _note(self, signum, frame) -> None:
        raise StopRequested(signal.Signals(signum).name)


def bad_values(values: dict[str, float]) -> list[str]:
    """The names whose value is NaN or infinite.

    >>> bad_values({"P0": 1.2, "P4": float("nan"), "aux": float("inf")})
    ['P4', 'aux']
    """
    return [name for name, value in values.items() if not math.isfinite(value)]


def non_finite_loss(name: str, iteration: int, outputs: list[str], last_saved: str) -> NonFiniteError:
    return NonFiniteError(f"{name}: non-finite loss at iteration {iteration} in output(s) {', '.join(outputs)}; "
                          f"training stopped, no result written; {last_saved}")


def non_finite_gradient(name: str, iteration: int, model: nn.Module, last_saved: str) -> NonFiniteError:
    bad = [n for n, p in model.named_parameters() if p.grad is not None and not torch.isfinite(p.grad).all()]
    return NonFiniteError(f"{name}: non-finite gradient at iteration {iteration} in {len(bad)} parameter(s), e.g. "
                          f"{', '.join(bad[:3])}; training stopped, no result written; {last_saved}")


def check_finite_weights(model: nn.Module, name: str, iteration: int, last_saved: str) -> None:
    """Raise :class:`NonFiniteError` if a parameter or buffer of ``model`` is NaN or infinite."""
    for key, tensor in model.state_dict().items():
        if tensor.is_floating_point() and not torch.isfinite(tensor).all():
            raise NonFiniteError(f"{name}: weight {key} is not finite after iteration {iteration}; nothing "
                                 f"saved over it; {last_saved}")


class SkippedSteps:
    """Counts AMP steps the grad scaler skipped in a row; :data:`MAX_SKIPPED_STEPS` of them fail.

    >>> counter = SkippedSteps(limit=2)
    >>> counter.record(True, 1, "row", [], ""), counter.record(False, 2, "row", [], "")
    (1, 0)
    """

    def __init__(self, limit: int = MAX_SKIPPED_STEPS):
        self.limit, self.in_a_row = limit, 0

    def record(self, skipped: bool, iteration: int, name: str, bad_outputs: list[str], last_saved: str) -> int:
        self.in_a_row = self.in_a_row + 1 if skipped else 0
        if self.in_a_row >= self.limit:
            where = f" (non-finite loss in {', '.join(bad_outputs)})" if bad_outputs else ""
            raise NonFiniteError(f"{name}: the AMP grad scaler skipped {self.in_a_row} steps in a row up to iteration "
                                 f"{iteration}{where}: the gradients are not finite at any scale; training stopped, "
                                 f"no result written; {last_saved}")
        return self.in_a_row
