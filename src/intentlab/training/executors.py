"""Fanning a compare matrix out over machines with Ray: each unfinished cell is one Ray task.

    intentlab compare --plan PLAN --out /shared/runs/study --executor ray --address ray://head:10001

Every task runs the same `intentlab train` process a local compare runs (see cells.run_cell), with
its CPU/GPU needs declared to Ray, writing into OUT on a path every node sees. Finished cells are
skipped before submission; a task whose worker dies is retried by Ray and resumes from the cell's last
checkpoint; and the run folder's lock means a cell never trains twice at once, whoever starts it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from intentlab.errors import UserError

EXECUTORS = ("local", "ray")


def check_executor(executor: str, address: str | None, cpus: int, gpus: float) -> None:
    """The executor's options, checked before any cell starts (a missing Ray is a one-line error too)."""
    if executor not in EXECUTORS:
        raise UserError(f"--executor {executor!r} is not one of {', '.join(EXECUTORS)}.")
    if executor != "ray" and (address or gpus):
        raise UserError("--address and --cell-gpus go with --executor ray.")
    if cpus < 1 or gpus < 0:
        raise UserError("--cell-cpus must be at least 1 and --cell-gpus at least 0.")
    if executor == "ray":
        import_ray()


def import_ray() -> Any:
    try:
        import ray
    except ImportError:
        raise UserError("--executor ray needs Ray. Run: pip install 'intentlab[ray]'.") from None
    return ray


def cell_task(cell: Any, path: str) -> dict[str, Any]:
    """What runs on a Ray worker: the cell's training process; returns its record as a dict."""
    from intentlab.training.cells import run_cell

    return run_cell(cell, Path(path)).to_dict()


def connect(ray: Any, address: str | None) -> None:
    """Join the cluster at `address`, or start a local Ray instance; one line when it cannot."""
    if ray.is_initialized():
        return
    try:
        ray.init(address=address, include_dashboard=False, log_to_driver=True, configure_logging=False)
    except Exception as e:  # ConnectionError, RuntimeError, ValueError: Ray raises many kinds here
        where = f"the Ray cluster at {address!r}" if address else "a local Ray instance"
        raise UserError(
            f"cannot connect to {where} ({type(e).__name__}: {str(e).splitlines()[0][:160] if str(e) else ''}). "
            "Check --address (ray://HOST:10001 or HOST:6379) and that the cluster is up."
        ) from None


def run_ray(out: Path, cells: list[Any], address: str | None, cpus: int, gpus: float) -> None:
    """Submit every unfinished cell as a task and report them as they finish."""
    from intentlab.runs.record import is_complete
    from intentlab.training.cells import tag

    ray = import_ray()
    connect(ray, address)
    todo = [c for c in cells if not is_complete(c.path(out))]
    for c in cells:
        if c not in todo:
            print(f"{tag(c)}: complete, skipped", flush=True)
    # the train process runs as many threads as the task reserves CPUs
    task = ray.remote(num_cpus=cpus, num_gpus=gpus, max_retries=2)(cell_task)
    pending = {
        task.remote(
            c.__class__(c.name, c.seed, c.cfg.replace(threads=c.cfg.threads or cpus)), str(c.path(out))
        ): c
        for c in todo
    }
    print(f"ray: {len(pending)} cells submitted ({cpus} CPU, {gpus:g} GPU each)", flush=True)
    failures = []
    while pending:
        done, _ = ray.wait(list(pending), num_returns=1)
        for ref in done:
            cell = pending.pop(ref)
            try:
                record = ray.get(ref)
            except Exception as e:  # the task's own error, wrapped by Ray
                failures.append(f"{tag(cell)}: {str(e).strip().splitlines()[-1][:200]}")
                print(f"{tag(cell)}: failed", flush=True)
                continue
            print(
                f"{tag(cell)}: test accuracy {record['test']['accuracy']:.4f}; {len(pending)} cells left",
                flush=True,
            )
    if failures:
        raise UserError(
            f"{len(failures)} cell(s) failed ({'; '.join(failures[:3])}). Fix them and run the same compare command "
            "to continue: finished cells are kept."
        )
