"""The training loop of one table row (``pna train``, :mod:`pna.cli.train`).

Iteration-based AdamW + poly training of one table row, with periodic evaluation, atomic
checkpoints, resumption (``--resume``), DDP under torchrun, gradient accumulation to the effective
batch (:mod:`pna.engine.batch_split`), a clean stop on SIGTERM / SIGUSR1 / SIGINT and a refusal of
non-finite losses (:mod:`pna.engine.interrupts`), and a results JSON at the end. What the config and
the files decide is refused before anything is built (:mod:`pna.engine.preflight`); the run folder
is locked while it trains (:mod:`pna.engine.runlock`); its log goes to ``log.jsonl``, TensorBoard and
a callback (:mod:`pna.engine.watch`), an error that ends it to ``failed.json``.

What a resume restores exactly: the model, optimiser, scheduler and grad-scaler state, the data
position and every sample's augmentation (seeded by (seed, epoch, index), :mod:`pna.engine.loader`),
and each rank's random generators (torch, CUDA, numpy, python: saved per rank) when the world size is
the one that saved the checkpoint. A resumed CPU run continues bit for bit (tested); on CUDA, kernels
that are not deterministic (atomics in convolution and interpolation backward) make two runs differ in
the last bits unless ``train.deterministic`` is set.
Finished runs are cached by config hash under ``runs/``: training the same config again loads it.

Example::

    >>> from pna.configs import load_config
    >>> cfg = load_config("voc/fcn_r50_os32_pna", "smoke")
    >>> result = train(cfg)                     # doctest: +SKIP
    >>> result.metrics["stages"]["P4"]["mIoU"]  # doctest: +SKIP
"""
from __future__ import annotations

import time
from pathlib import Path

import torch
from torch import nn

from pna.engine import distributed as dist
from pna.engine.batch_split import accumulate_gradients, split_for
from pna.engine.checkpoint import atomic_save, atomic_write_json, load_checkpoint, rng_state, set_rng_state
from pna.configs import Config, config_hash
from pna.engine.build import build_eval_set, build_model, build_train_set
from pna.engine.determinism import RESEED_STRIDE, make_deterministic, seed_everything
from pna.engine.interrupts import (TRAINING_SIGNALS, RaiseOnSignal, SkippedSteps, StopRequested, StopSignals,
                                   TrainingInterrupted, bad_values, check_finite_weights, non_finite_gradient,
                                   non_finite_loss)
from pna.engine.boundary import BoundarySettings
from pna.engine.evaluate import evaluate_with_config, with_boundary_metrics
from pna.engine.watch import RunWatch, eval_entry, record_failure
from pna.engine.loader import padding_collate, train_batches
from pna.engine.optim import build_optimizer, build_scheduler
from pna.engine.progress import Progress
from pna.models.segmentor import size_divisor
from pna.engine.preflight import check_before_training
from pna.engine.records import RunResult, finish_run, write_result
from pna.engine.rundir import RunDir, claim_run, default_run_dir


class Trainer:
    """One run of `cfg` in `run_dir` (fresh or resumed); :meth:`fit` trains, evaluates and saves."""

    def __init__(self, cfg: Config, run: RunDir, device: torch.device, resume: bool, progress: bool = True, **watch):
        self.cfg, self.run, self.device, self.progress = cfg, run, device, progress
        self.hash = config_hash(cfg)
        self.world = dist.world_size()
        self.split = split_for(cfg, self.world)  # one-line error unless processes x micro x steps = batch
        seed_everything(cfg.train.seed + dist.rank())
        self.train_set, self.eval_set = build_train_set(cfg), build_eval_set(cfg)
        self.model = build_model(cfg, self.train_set.num_classes, device)
        self.net = (nn.parallel.DistributedDataParallel(self.model, device_ids=[device] if device.type == "cuda" else None)
                    if self.world > 1 else self.model)
        from pna.models import SegmentationLoss
        self.criterion = SegmentationLoss(ignore_index=self.train_set.ignore_index, **cfg.model.loss)
        o = cfg.optim
        self.optimizer = build_optimizer(self.model, o.lr, o.weight_decay, o.betas, o.decay_rule, o.optimizer, o.momentum)
        self.scheduler = build_scheduler(self.optimizer, cfg.train.iters, o.warmup_iters, o.warmup_ratio,
                                         o.poly_power, o.min_lr)
        self.amp = cfg.train.amp and device.type == "cuda"
        self.scaler = torch.amp.GradScaler("cuda", enabled=self.amp)
        self.skipped = SkippedSteps()
        self.iteration, self.elapsed, self.saved_at, self.grad_norm = 0, 0.0, None, None
        if resume:
            self._load(load_checkpoint(run.last, map_location=device))
        self.watch = RunWatch(run.log, device, cfg.train.batch_size, self.iteration, self.elapsed, **watch)

    def _load(self, ckpt: dict) -> None:
        if ckpt["config_hash"] != self.hash:
            raise ValueError(f"{self.run.last} was written by config {ckpt['config_hash'][:10]}, not {self.hash[:10]}")
        self.model.load_state_dict(ckpt["model"])
        self.optimizer.load_state_dict(ckpt["optimizer"])
        self.scheduler.load_state_dict(ckpt["scheduler"])
        self.scaler.load_state_dict(ckpt["scaler"])
        states = ckpt.get("rng_per_rank") or [ckpt["rng"]]
        if len(states) == self.world:  # every rank continues its own generators: the resume is exact
            set_rng_state(states[dist.rank()])
        else:  # another world size: the data and its augmentation are still exact (seeded per sample,
            # pna.engine.loader); the model's own random draws (dropout, drop path) restart from a derived seed
            print(f"resuming a run saved by {len(states)} process(es) with {self.world}: random generators "
                  "re-seeded (data order unchanged)", flush=True)
            seed_everything(self.cfg.train.seed + dist.rank() + RESEED_STRIDE * ckpt["iteration"])
        self.iteration, self.elapsed = ckpt["iteration"], ckpt["elapsed_s"]
        self.saved_at = self.iteration

    def _kept(self) -> str:
        """Where the last good state is, for the error of a run that went bad."""
        return (f"{self.run.last} holds iteration {self.saved_at}" if self.saved_at is not None
                else "no checkpoint was written")

    def _save_last(self) -> None:
        check_finite_weights(self.model, self.cfg.name, self.iteration, self._kept())
        states = dist.gather_objects(rng_state())  # every rank's generators, in rank order
        if dist.is_main():
            atomic_save({"model": self.model.state_dict(), "optimizer": self.optimizer.state_dict(),
                         "scheduler": self.scheduler.state_dict(), "scaler": self.scaler.state_dict(),
                         "rng": states[0], "rng_per_rank": states, "iteration": self.iteration,
                         "elapsed_s": self.elapsed,
                         "config": self.cfg.to_dict(), "config_hash": self.hash,
                         "world_size": self.world}, self.run.last)
        self._log({"type": "checkpoint", "iter": self.iteration})
        self.saved_at = self.iteration
        dist.barrier()

    def _log(self, entry: dict) -> None:
        if dist.is_main():
            self.watch.log(entry)

    def evaluate(self) -> dict:
        """The evaluation split scored with the config's test protocol, logged: mIoU and Boundary IoU of every
        stage (+5-14 % of an evaluation, results/benchmarks/boundary_cpu.csv), predictions (TensorBoard)."""
        start = time.perf_counter()
        metrics = evaluate_with_config(self.model, self.eval_set, self.cfg, self.device,
                                       workers=min(self.cfg.train.workers, 2), boundary=BoundarySettings())
        self.eval_seconds = round(time.perf_counter() - start, 3)
        self._log(eval_entry(self.iteration, metrics, self.eval_seconds))
        if dist.is_main():
            self.watch.show_predictions(self.model, self.eval_set, self.cfg, self.iteration)
        return {"split": self.cfg.data.eval_split, **metrics}

    def train_step(self, batch: dict, signalled: bool) -> tuple[float, dict, bool]:
        """One optimiser step over this process's share of the batch, in micro-batches. Returns the
        loss, its per-output parts and whether any rank was signalled to stop (the same on every rank)."""
        self.optimizer.zero_grad(set_to_none=True)
        loss, parts = accumulate_gradients(self.net, self.criterion, batch, self.split.micro_batch, self.device,
                                           self.amp, self.scaler)
        values = dict(zip(["total", *parts], torch.stack([loss, *parts.values()]).tolist()))  # one device sync
        bad = bad_values(values)
        stop, any_bad = dist.any_flags([signalled, bool(bad)], self.device)
        if any_bad:
            bad = sorted({n for names in dist.gather_objects(bad) for n in names} - {"total"}) or ["total"]
            if not self.amp:  # under AMP the scaler skips the step; SkippedSteps counts it
                raise non_finite_loss(self.cfg.name, self.iteration + 1, bad, self._kept())
        self.apply_gradients(bad if any_bad else [])
        parts = {k: v for k, v in values.items() if k != "total"}
        return values["total"], parts, stop

    def apply_gradients(self, bad_outputs: list[str]) -> None:
        """Clip, step and schedule once per effective batch. Without AMP a non-finite gradient is an
        error; with AMP a step the scaler skips is counted (interrupts.SkippedSteps)."""
        clip = self.cfg.optim.clip_grad
        if self.amp:
            self.scaler.unscale_(self.optimizer)  # scaler.step would unscale anyway; the norm is the true one
        grads = [p.grad for p in self.model.parameters() if p.grad is not None]
        norm = (nn.utils.clip_grad_norm_(self.model.parameters(), clip) if clip is not None
                else nn.utils.get_total_norm(grads))
        self.grad_norm = norm  # a tensor: read (synchronised) only when logged
        if self.amp:
            scale = self.scaler.get_scale()
            self.scaler.step(self.optimizer)
            self.scaler.update()
            self.skipped.record(self.scaler.get_scale() < scale, self.iteration + 1, self.cfg.name, bad_outputs,
                                self._kept())
        else:
            if not torch.isfinite(norm):
                raise non_finite_gradient(self.cfg.name, self.iteration + 1, self.model, self._kept())
            self.optimizer.step()
        self.scheduler.step()

    def fit(self, stop_after: int | None = None) -> dict | None:
        """Train to ``train.iters`` and evaluate; with ``stop_after``, stop after that many
        iterations of this call, save the resume state and return None (a time-sliced job).
        SIGTERM / SIGUSR1 / SIGINT end the step in progress, save the resume state and raise
        :class:`TrainingInterrupted`."""
        t = self.cfg.train
        stop_at = t.iters if stop_after is None else min(t.iters, self.iteration + stop_after)
        # Samples of different sizes (Detectron2 rows) are padded per batch to the model's size divisor.
        collate = padding_collate(size_divisor(self.model), self.train_set.ignore_index)
        batches = train_batches(self.train_set, self.split.per_process, t.seed, self.iteration, t.workers,
                                self.world, dist.rank(), pin_memory=self.device.type == "cuda", collate_fn=collate)
        bar = Progress(t.iters, self.cfg.row, initial=self.iteration, enabled=self.progress and dist.is_main())
        start = time.perf_counter() - self.elapsed
        self.model.train()
        with StopSignals(TRAINING_SIGNALS) as signals:
            while self.iteration < stop_at:
                lr = self.optimizer.param_groups[0]["lr"]
                loss, parts, stop = self.train_step(next(batches), signals.received is not None)
                self.iteration += 1
                self.elapsed = time.perf_counter() - start
                bar.update(1)
                if self.iteration % t.log_interval == 0 or self.iteration == t.iters:
                    loss = dist.mean_scalar(loss, self.device)
                    bar.set_postfix(loss=f"{loss:.3f}", lr=f"{lr:.2e}")
                    self._log({"type": "train", "iter": self.iteration, "loss": loss, "parts": parts, "lr": lr,
                               "time_s": round(self.elapsed, 3),
                               **self.watch.step_stats(self.iteration, self.elapsed, self.grad_norm, self.scaler)})
                if stop:
                    self._interrupted(bar, signals.received)
                if t.eval_interval and self.iteration % t.eval_interval == 0 and self.iteration < t.iters:
                    self.evaluate()
                if t.checkpoint_interval and self.iteration % t.checkpoint_interval == 0 and self.iteration < t.iters:
                    self._save_last()
            if dist.any_flags([signals.received is not None], self.device)[0]:  # signalled after the last step
                self._interrupted(bar, signals.received)
            if self.iteration == t.iters and t.checkpoint_interval and self.saved_at != self.iteration:
                self._save_last()  # a signal during the long final evaluation then loses no iteration
        bar.close()
        if self.iteration < t.iters:
            self._save_last()
            return None
        check_finite_weights(self.model, self.cfg.name, self.iteration, self._kept())
        return self.evaluate()

    def _interrupted(self, bar: Progress, signal_name: str | None) -> None:
        bar.close()
        self._save_last()
        self._log({"type": "interrupted", "iter": self.iteration, "signal": signal_name})
        raise TrainingInterrupted(self.cfg.name, self.iteration, self.run.last, signal_name)


def _announce(text: str) -> None:
    if dist.is_main():
        print(text, flush=True)


def train(cfg: Config, out_dir: str | Path | None = None, resume: bool = False, overwrite: bool = False,
          reuse: bool = True, results_dir: str | Path | None = None, write_results: bool = True,
          progress: bool = True, stop_after: int | None = None, wait: bool = False, tensorboard: bool = False,
          on_log=None) -> RunResult:
    """Train `cfg` (or load its finished run), evaluate every stage, write the results JSON.

    `out_dir` defaults to ``runs/<model>-<profile>-<hash10>/``. A finished run of the same config
    there is loaded instead of trained again when `reuse`; an interrupted one is resumed when
    `resume` or `reuse`. Nothing finished is replaced without `overwrite`. What the config and the
    files decide is refused first (:mod:`pna.engine.preflight`). The folder is locked while it trains
    (:mod:`pna.engine.runlock`): another training of it refuses, or with `wait` waits and then reuses
    (or resumes) it. A signal stops it with its state saved (:class:`TrainingInterrupted`), another error
    is recorded (``failed.json``). ``tensorboard``, ``on_log``: where the log also goes (:mod:`pna.engine.watch`).
    """
    if stop_after is not None and (isinstance(stop_after, bool) or not isinstance(stop_after, int) or stop_after < 1):
        raise ValueError(f"stop_after={stop_after!r}: expected None or a whole number >= 1 (iterations of this call)")
    device = dist.init_from_env(cfg.train.device)
    if cfg.train.deterministic and make_deterministic(device):
        _announce("train.deterministic: deterministic CUDA kernels (slower: no cuDNN autotuning; ops without "
                  "a deterministic kernel warn and stay non-deterministic)")
    cfg_hash = config_hash(cfg)
    run = RunDir(out_dir or default_run_dir(cfg.model.name, cfg.profile, cfg_hash))
    check_before_training(cfg, cfg_hash, run, resume, overwrite, results_dir, write_results and dist.is_main(),
                          dist.world_size())
    lock, trainer = None, None
    try:
        with RaiseOnSignal(TRAINING_SIGNALS):
            action, lock = claim_run(run, cfg_hash, resume, overwrite, reuse, wait)
            if action == "reuse":
                # The same training may have been asked for by another table's row (same hash): the
                # results JSON carries the labels of this request.
                record = {**with_boundary_metrics(run, cfg, device), "config": cfg.to_dict()}
                _announce(f"{cfg.name} ({cfg.profile}): reusing the finished run in {run.path}")
                path = write_result(record, results_dir) if write_results and dist.is_main() else None
                return RunResult(run.path, cfg, cfg_hash, record["metrics"], record, path, reused=True)
            trainer = _start(cfg, cfg_hash, run, device, action, progress, tensorboard=tensorboard, on_log=on_log)
            metrics = trainer.fit(stop_after)
            return finish_run(trainer, metrics, results_dir, write_results, overwrite)
    except StopRequested as stop:
        saved = run.last if run.last.is_file() else None
        raise TrainingInterrupted(cfg.name, trainer.saved_at if trainer else None, saved, stop.signal_name) from None
    except Exception as error:
        if lock is not None and dist.is_main() and not isinstance(error, TrainingInterrupted):
            record_failure(run.log, run.failed, trainer.iteration if trainer else None, error)
        raise
    finally:
        if trainer is not None:
            trainer.watch.close()
        if lock is not None:
            lock.release()


def _start(cfg: Config, cfg_hash: str, run: RunDir, device: torch.device, action: str, progress: bool, **watch) -> Trainer:
    """The run folder's config written (a fresh start forgets the log of a run that never saved), the trainer built."""
    if dist.is_main():
        if action in ("fresh", "restart"):
            run.log.unlink(missing_ok=True)
        run.failed.unlink(missing_ok=True)  # this training is the run's latest word
        atomic_write_json({"config_hash": cfg_hash, "config": cfg.to_dict()}, run.config)
    dist.barrier()
    if action == "restart":
        _announce(f"{cfg.name} ({cfg.profile}): nothing to resume in {run.path} (its run stopped before the first "
                  "checkpoint); training from the start")
    _announce(f"{cfg.name} ({cfg.profile}): {'resuming' if action == 'resume' else 'training'} in {run.path}")
    return Trainer(cfg, run, device, resume=action == "resume", progress=progress, **watch)
