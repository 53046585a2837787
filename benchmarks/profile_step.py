"""Where a training step's time goes: torch.profiler over intentlab's own `train_step`, grouped by kind,
or (`--phases`) the step's phases timed without a profiler.

    python benchmarks/profile_step.py [--method full] [--steps 30] [--examples 1024]
    python benchmarks/profile_step.py --phases [--method full] [--examples 2048]

It builds a run exactly as `intentlab train` does (same `Setup`, same shipped config), warms up for 5
steps, then profiles `--steps` steps and sums each operator's self CPU time into: matrix multiplication,
attention, element-wise/normalisation/activation, optimizer, casts/copies and the rest. This shows how far
a training step is from the matmul rate measured by benchmarks/hardware.py, and why.

`--phases` runs in its own process on the allocator `intentlab train` uses, trains one epoch of the
subset to warm up (every batch shape once), then times the next epoch's `train_step` calls and, inside
them, the forward pass, the backward pass, gradient clipping, the optimizer and scheduler steps and
zeroing the gradients (by wrapping those calls; "the rest" is batching and the loss readout). No profiler
runs, so the times are the step's own.
"""

from __future__ import annotations

import argparse
import tempfile
from collections import defaultdict
from pathlib import Path

from common import isolated, machine, subset, table

KINDS = {
    "matmul": ("aten::mm", "aten::addmm", "aten::bmm", "aten::baddbmm", "aten::matmul", "aten::linear"),
    "attention": ("scaled_dot_product", "flash_attention", "_efficient_attention"),
    "optimizer": ("adam", "foreach", "_fused"),
    "casts/copies": ("aten::copy_", "aten::to", "aten::_to_copy", "aten::clone", "aten::contiguous"),
    "element-wise, norms, activations": (
        "aten::add",
        "aten::mul",
        "aten::div",
        "aten::sub",
        "gelu",
        "layer_norm",
        "softmax",
        "dropout",
        "aten::tanh",
        "aten::sum",
        "aten::mean",
        "aten::native",
        "aten::fill_",
        "aten::zero_",
        "aten::where",
        "aten::masked",
        "aten::embedding",
        "nll_loss",
        "log_softmax",
        "aten::norm",
        "aten::clamp",
        "aten::sqrt",
        "aten::pow",
    ),
}


def kind(name: str) -> str:
    low = name.lower()
    for k, keys in KINDS.items():
        if any(key.lower() in low for key in keys):
            return k
    return "other"


PHASES = ("forward", "backward", "gradient clipping", "optimizer", "scheduler", "zero_grad")


def time_phases(method: str, examples: int) -> dict[str, float]:
    """Seconds per phase summed over the second epoch of a subset, with "step" the whole `train_step`
    and "steps"/"examples" its counts (in whatever process calls this)."""
    import time

    from intentlab.config import resolve
    from intentlab.models.loading import quiet_transformers
    from intentlab.training.loop import for_this_machine, train_step
    from intentlab.training.setup import Setup, make_accelerator

    quiet_transformers()
    spent: dict[str, float] = defaultdict(float)

    def timed(obj: object, attr: str, phase: str) -> None:
        call = getattr(obj, attr)

        def wrapper(*a: object, **kw: object) -> object:
            t = time.perf_counter()
            try:
                return call(*a, **kw)
            finally:
                spent[phase] += time.perf_counter() - t

        setattr(obj, attr, wrapper)

    with tempfile.TemporaryDirectory() as d:
        cfg = for_this_machine(resolve(method, None, {"data": str(subset(examples, Path(d) / "data"))}))
        accelerator = make_accelerator(cfg)
        setup = Setup(cfg, accelerator)
        setup.model.train()
        timed(setup.model, "forward", "forward")
        timed(accelerator, "backward", "backward")
        timed(accelerator, "clip_grad_norm_", "gradient clipping")
        timed(setup.optimizer, "step", "optimizer")
        timed(setup.scheduler, "step", "scheduler")
        timed(setup.optimizer, "zero_grad", "zero_grad")
        for epoch in range(2):
            setup.sampler.set_epoch(epoch)
            batches = setup.sampler.batches()
            spent.clear()
            start = time.perf_counter()
            examples_done = 0
            for step, indices in enumerate(batches):
                examples_done += train_step(setup, accelerator, indices, step)[1]
            spent["step"] = time.perf_counter() - start
    return {**spent, "steps": len(batches), "examples": examples_done, "bf16": bool(cfg.bf16)}


def phases(method: str, examples: int) -> None:
    t = isolated(time_phases, method, examples)
    steps, whole = t["steps"], t["step"]
    rest = whole - sum(t.get(p, 0.0) for p in PHASES)
    print(
        f"\n{method}, bf16 {t['bf16']}, {steps} steps (the second epoch of {examples} examples): "
        f"{whole / steps * 1e3:.1f} ms a step, {t['examples'] / whole:.0f} training examples/s"
    )
    rows = [[p, f"{t.get(p, 0.0) / steps * 1e3:.2f}", f"{t.get(p, 0.0) / whole:.0%}"] for p in PHASES]
    rows.append(["the rest (batching, loss readout)", f"{rest / steps * 1e3:.2f}", f"{rest / whole:.0%}"])
    print(table(["phase", "ms per step", "share"], rows))


def main() -> None:
    import torch
    from torch.profiler import ProfilerActivity, profile

    from intentlab.config import resolve
    from intentlab.models.loading import quiet_transformers
    from intentlab.training.loop import for_this_machine, train_step
    from intentlab.training.setup import Setup, make_accelerator

    ap = argparse.ArgumentParser()
    ap.add_argument("--method", default="full")
    ap.add_argument("--steps", type=int, default=30)
    ap.add_argument("--examples", type=int, default=None, help="subset size (1024; 2048 with --phases)")
    ap.add_argument("--phases", action="store_true", help="time the step's phases, without a profiler")
    args = ap.parse_args()
    quiet_transformers()
    print(f"machine: {machine()}")
    if args.phases:
        phases(args.method, args.examples or 2048)
        return
    args.examples = args.examples or 1024
    with tempfile.TemporaryDirectory() as d:
        cfg = resolve(args.method, None, {"data": str(subset(args.examples, Path(d) / "data"))})
        cfg = for_this_machine(cfg)  # precision and attention kernel as `intentlab train` decides them
        accelerator = make_accelerator(cfg)
        setup = Setup(cfg, accelerator)
        setup.model.train()
        batches: list[list[int]] = []
        while len(batches) < 5 + args.steps:  # few --examples: the next epochs' batches, as in training
            setup.sampler.set_epoch(len(batches) // max(len(setup.sampler), 1))
            batches += setup.sampler.batches()
        for indices in batches[:5]:
            train_step(setup, accelerator, indices)
        todo = batches[5 : 5 + args.steps]
        with profile(activities=[ProfilerActivity.CPU]) as prof:
            for indices in todo:
                train_step(setup, accelerator, indices)
    by_kind: dict[str, float] = defaultdict(float)
    top: list[tuple[float, str]] = []
    for ev in prof.key_averages():
        by_kind[kind(ev.key)] += ev.self_cpu_time_total
        top.append((ev.self_cpu_time_total, ev.key))
    total = sum(by_kind.values())
    print(
        f"\n{args.method}, {len(todo)} steps of batch {cfg.batch_size}, bf16 {cfg.bf16}, {cfg.attention or 'default'} "
        f"attention, torch {torch.__version__}: "
        f"self CPU time by kind"
    )
    rows = [
        [k, f"{v / 1e6:.2f}", f"{v / total:.0%}"] for k, v in sorted(by_kind.items(), key=lambda kv: -kv[1])
    ]
    print(table(["kind", "seconds", "share"], rows))
    print("\ntop 12 operators by self CPU time")
    print(
        table(
            ["operator", "seconds", "share"],
            [[k, f"{t / 1e6:.2f}", f"{t / total:.0%}"] for t, k in sorted(top, reverse=True)[:12]],
        )
    )


if __name__ == "__main__":
    main()
