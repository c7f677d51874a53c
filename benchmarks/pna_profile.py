"""Where the CPU time of FCN-OS-32 + PNA goes: a torch.profiler table by operator and a table by module.

Two workloads, each after a warm-up: (1) the eval forward at 512 x 512 (batch 1, no grad) of the
paper-scale model; (2) one training step of the smoke config (``voc/fcn_r50_os32_pna``: forward,
losses, backward, AdamW) on its synthetic batches. Module times are wall milliseconds between
forward hooks (and, for the training step, full-backward hooks where a module's inputs need a
gradient); the operator table is torch.profiler's ``key_averages`` (self CPU time; one profiled
run). The 1-minute load average, torch version and thread count head the file: figures from a
busy machine mean little.

    python benchmarks/pna_profile.py                         # writes results/benchmarks/pna_profile_cpu.md
    python benchmarks/pna_profile.py --out /tmp/profile.md --rows 30
    PYTHONPATH=/path/to/older/checkout python benchmarks/pna_profile.py --out before.md   # another version
"""
from __future__ import annotations

import argparse
import os
import resource
import tempfile
import time
import warnings
from collections import defaultdict
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import torch  # noqa: E402
from torch.profiler import ProfilerActivity, profile, record_function  # noqa: E402

import pna  # noqa: E402
from pna.configs import load_config  # noqa: E402
from pna.engine.loader import train_batches  # noqa: E402
from pna.engine.rundir import RunDir  # noqa: E402
from pna.engine.train import Trainer  # noqa: E402
from pna.models import create_model  # noqa: E402
from table_file import code_version  # noqa: E402  (benchmarks/table_file.py, beside this script)

ROOT = Path(__file__).resolve().parents[1]
SMOKE_CONFIG = "voc/fcn_r50_os32_pna"
# modules timed: top-level parts, each refinement stage and its parts, the SAM's two halves
TIMED = ("backbone", "head", "aux_head", "refine")
STAGE_PARTS = ("query", "value", "sam", "sam.attn", "sam.ffn", "norm_query", "norm_value", "nam", "nam.qk", "nam.v",
               "nam.proj", "norm_mlp", "mlp", "norm_out", "classifier")


def timed_modules(model: torch.nn.Module) -> dict[str, torch.nn.Module]:
    named = dict(model.named_modules())
    names = [n for n in TIMED if n in named]
    for index in range(len(getattr(getattr(model, "refine", None), "stages", []))):
        stage = f"refine.stages.{index}"
        names += [stage] + [f"{stage}.{p}" for p in STAGE_PARTS if f"{stage}.{p}" in named]
    return {n: named[n] for n in names}


class ModuleClock:
    """Wall time per module: forward hooks, and full-backward hooks where they fire."""

    def __init__(self, modules: dict[str, torch.nn.Module], backward: bool):
        self.names = list(modules)
        self.forward, self.backward = defaultdict(float), defaultdict(float)
        self.handles = []
        for name, module in modules.items():
            self.handles += [module.register_forward_pre_hook(self._start(self.forward, name)),
                             module.register_forward_hook(self._stop(self.forward, name))]
            if backward and name != "backbone":  # the image needs no gradient: the backbone's hook would not fire
                self.handles += [module.register_full_backward_pre_hook(self._start(self.backward, name)),
                                 module.register_full_backward_hook(self._stop(self.backward, name))]
        self.open: dict[tuple[int, str], float] = {}

    def _start(self, table, name):
        def hook(*_):
            self.open[(id(table), name)] = time.perf_counter()
        return hook

    def _stop(self, table, name):
        def hook(*_):
            start = self.open.pop((id(table), name), None)
            if start is not None:
                table[name] += time.perf_counter() - start
        return hook

    def remove(self):
        for handle in self.handles:
            handle.remove()


def _module_table(clock: ModuleClock, total_ms: float, runs: int, backward: bool) -> list[str]:
    lines = ["| module | forward ms | " + ("backward ms | " if backward else "") + "share of the step |",
             "|---|---:|" + ("---:|" if backward else "") + "---:|"]
    for name in (n for n in clock.names if n in clock.forward):
        fwd = 1e3 * clock.forward[name] / runs
        bwd = 1e3 * clock.backward.get(name, float("nan")) / runs
        both = fwd + (bwd if bwd == bwd else 0.0)
        lines.append(f"| {name} | {fwd:.1f} | " + (f"{bwd:.1f} | " if backward else "") + f"{100 * both / total_ms:.1f} % |")
    return lines


def _operator_table(prof, rows: int) -> list[str]:
    events = sorted(prof.key_averages(), key=lambda e: e.self_cpu_time_total, reverse=True)
    total = sum(e.self_cpu_time_total for e in events) or 1.0
    lines = ["| operator | calls | self CPU ms | share |", "|---|---:|---:|---:|"]
    for e in events[:rows]:
        lines.append(f"| {e.key} | {e.count} | {e.self_cpu_time_total / 1e3:.1f} | {100 * e.self_cpu_time_total / total:.1f} % |")
    return lines + [f"| (all {len(events)} operators) | {sum(e.count for e in events)} | {total / 1e3:.1f} | 100 % |"]


def page_faults(model: torch.nn.Module, images: torch.Tensor, runs: int) -> str:
    """Minor page faults and user / system CPU time per forward (``getrusage`` of this process): the
    kernel's cost of the fresh pages that torch's cache-less CPU allocator gets for large tensors."""
    with torch.no_grad():
        model(images)
        before, start = resource.getrusage(resource.RUSAGE_SELF), time.perf_counter()
        for _ in range(runs):
            model(images)
        wall, after = time.perf_counter() - start, resource.getrusage(resource.RUSAGE_SELF)
    faults = (after.ru_minflt - before.ru_minflt) / runs
    user, system = ((getattr(after, k) - getattr(before, k)) * 1e3 / runs for k in ("ru_utime", "ru_stime"))
    return f"{1e3 * wall / runs:.0f} ms wall, {faults:,.0f} minor page faults, CPU {user:.0f} ms user + {system:.0f} ms system"


def inference_section(size: int, runs: int, rows: int) -> list[str]:
    model = create_model("fcn_r50_os32_pna", 21).eval()
    images = torch.randn(1, 3, size, size)
    with torch.no_grad():
        model(images)
        clock = ModuleClock(timed_modules(model), backward=False)
        start = time.perf_counter()
        for _ in range(runs):
            model(images)
        total_ms = 1e3 * (time.perf_counter() - start) / runs
        clock.remove()
        with profile(activities=[ProfilerActivity.CPU]) as prof:
            model(images)
    memory = [f"- fcn_r50_os32_pna: {page_faults(model, images, runs)}",
              f"- fcn_r50_os32: {page_faults(create_model('fcn_r50_os32', 21).eval(), images, runs)}"]
    return ([f"## Inference: fcn_r50_os32_pna at {size} x {size}, batch 1 (mean of {runs} forwards: {total_ms:.0f} ms)", "",
             "### By module", ""] + _module_table(clock, total_ms, runs, False) +
            ["", "(nam = its qk, v and proj linear layers + the neighbourhood attention itself)", "",
             "### By operator (one profiled forward)", ""] + _operator_table(prof, rows) +
            ["", f"### Fresh memory per forward (mean of {runs}, both models; getrusage)", ""] + memory +
            ["", "Large tensors come from `mmap` or a trimmed heap top on every forward (torch's CPU allocator keeps no "
                 "cache), so the kernel faults and zeroes their pages again: the system time above. It is not the "
                 "refinement's alone: the backbone's large early maps fault as much."])


def training_section(runs: int, rows: int) -> list[str]:
    cfg = load_config(SMOKE_CONFIG, "smoke", ["train.device=cpu"])
    with tempfile.TemporaryDirectory() as tmp:
        trainer = Trainer(cfg, RunDir(tmp), torch.device("cpu"), resume=False, progress=False)
        batches = train_batches(trainer.train_set, cfg.train.batch_size, cfg.train.seed)
        criterion = trainer.criterion
        trainer.criterion = lambda outputs, labels: _labelled(criterion, outputs, labels)
        for _ in range(3):
            trainer.train_step(next(batches), False)
        clock = ModuleClock(timed_modules(trainer.model), backward=True)
        prefetched = [next(batches) for _ in range(runs)]
        start = time.perf_counter()
        for batch in prefetched:
            trainer.train_step(batch, False)
        total_ms = 1e3 * (time.perf_counter() - start) / runs
        clock.remove()
        batch = next(batches)
        with profile(activities=[ProfilerActivity.CPU]) as prof:
            trainer.train_step(batch, False)
    losses = next((e for e in prof.key_averages() if e.key == "losses"), None)
    loss_ms = "" if losses is None else f"; the losses' forward (upsampling + cross-entropy of every output): {losses.cpu_time_total / 1e3:.1f} ms"
    return ([f"## Training step: {SMOKE_CONFIG} smoke, batch {cfg.train.batch_size} of {cfg.data.crop[0]} x "
             f"{cfg.data.crop[1]} (mean of {runs} steps: {total_ms:.0f} ms{loss_ms})", "",
             "### By module (backward: from the gradient of a module's output to that of its input)", ""] +
            _module_table(clock, total_ms, runs, True) +
            ["", "### By operator (one profiled step)", ""] + _operator_table(prof, rows))


def _labelled(criterion, outputs, labels):
    with record_function("losses"):
        return criterion(outputs, labels)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=ROOT / "results" / "benchmarks" / "pna_profile_cpu.md")
    parser.add_argument("--size", type=int, default=512)
    parser.add_argument("--runs", type=int, default=3, help="timed forwards / steps per module table")
    parser.add_argument("--rows", type=int, default=25, help="operators listed")
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    warnings.simplefilter("ignore")  # randomly initialised backbones
    load_before = os.getloadavg()[0]
    body = inference_section(args.size, args.runs, args.rows) + [""] + training_section(args.runs, args.rows)
    header = [f"# CPU profile of FCN-OS-32 + PNA (`python benchmarks/pna_profile.py`)", "",
              f"Code {code_version()} ({Path(pna.__file__).parent}), torch {torch.__version__}, {args.threads} threads, "
              f"{os.cpu_count()} CPUs; 1-minute load average {load_before:.2f} before, {os.getloadavg()[0]:.2f} after.", ""]
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text("\n".join(header + body) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
