"""`intentlab compare`: a matrix of methods x seeds on one shared data split, then a report.

    intentlab compare --out runs/cmp --seeds 3
    intentlab compare --out runs/cmp --plan configs/compare/banking77.yaml

Each cell is an ordinary run folder, `OUT/<name>/seed-<seed>`. Finished cells are skipped, so an
interrupted comparison continues where it stopped. Precedence for a cell's config, lowest first: the
method's shipped config < the plan's `common:` < the plan's per-method entry < command-line flags.

A plan file:

    methods: [baseline, head, lora, dora, ia3, full]
    seeds: 3                      # default seeds per method
    common: {epochs: 5}
    head: {seeds: 1}
    lora-study: {config: lora-study, seeds: 1}   # a variant: any name, with a shipped config or a path
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from intentlab import config as C
from intentlab import methods as M
from intentlab.errors import UserError
from intentlab.folders import FolderLock, check_folder_path
from intentlab.runs.files import RUN_MARKER
from intentlab.runs.record import is_complete
from intentlab.training.cells import Cell, run_cell, tag


def parse_sizes(text: Any, option: str = "--train-sizes") -> list[str | None]:
    """--train-sizes 5,10,30,all (or a plan's list) -> ['5', '10', '30', None]; one-line errors for bad
    sizes, naming `option`."""
    if not text:
        return [None]
    parts = text if isinstance(text, list) else str(text).split(",")
    sizes: list[str | None] = []
    for part in (str(p).strip() for p in parts if str(p).strip()):
        try:
            size = C.parse_train_size(part)
        except ValueError as e:
            raise UserError(
                f"{option} {part!r} {e}. Use counts per intent (5,10,30), fractions (0.1) or all."
            ) from None
        sizes.append(None if size is None else part)
    return sizes


PLAN_KEYS = ("methods", "seeds", "common", "train_sizes")


def check_plan(plan: dict[str, Any], where: str) -> None:
    """The shape of a plan file (which may come from anyone): a one-line error naming the key, never a
    traceback from deeper down."""

    def seeds_ok(value: Any) -> bool:
        return isinstance(value, int) and not isinstance(value, bool) and value >= 1

    methods = plan.get("methods")
    names_ok = isinstance(methods, list) and all(isinstance(m, str) for m in methods)
    if methods is not None and not isinstance(methods, str) and not names_ok:
        raise UserError(f"plan {where}: methods: must be a list of names, e.g. methods: [lora, full].")
    if "seeds" in plan and not seeds_ok(plan["seeds"]):
        raise UserError(f"plan {where}: seeds: must be a whole number of at least 1, got {plan['seeds']!r}.")
    if not isinstance(plan.get("common") or {}, dict):
        raise UserError(f"plan {where}: common: must hold settings, e.g. common: {{epochs: 4}}.")
    for name, entry in plan.items():
        if name in PLAN_KEYS or entry is None:
            continue
        if not isinstance(entry, dict):
            raise UserError(
                f"plan {where}: {name}: must hold settings, e.g. {name}: {{seeds: 3, lr: 0.001}}."
            )
        if "seeds" in entry and not seeds_ok(entry["seeds"]):
            raise UserError(
                f"plan {where}: {name}: seeds must be a whole number of at least 1, got {entry['seeds']!r}."
            )
        for key in ("config", "method"):
            if key in entry and not isinstance(entry[key], str):
                raise UserError(f"plan {where}: {name}: {key} must be a name or a path, got {entry[key]!r}.")


def plan_cells(
    methods: list[str] | None,
    seeds: int | None,
    flags: dict[str, Any],
    plan_file: str | None,
    train_sizes: str | None = None,
) -> list[Cell]:
    """Resolve every cell's config up front, so a bad value fails before any training starts."""
    plan = C.read_yaml(plan_file, "--plan") if plan_file else {}
    check_plan(plan, str(plan_file))
    plan_sizes = plan.pop("train_sizes", None)
    sizes = (
        parse_sizes(train_sizes) if train_sizes else parse_sizes(plan_sizes, f"plan {plan_file} train_sizes:")
    )
    names = methods or plan.get("methods") or list(M.COMPARE_DEFAULTS)
    if isinstance(names, str):
        names = [m.strip() for m in names.split(",") if m.strip()]
    twice = sorted({n for n in names if names.count(n) > 1})
    if twice:
        raise UserError(
            f"{', '.join(twice)} listed twice in --methods or the plan. Name each method or variant once."
        )
    default_seeds = seeds if seeds is not None else plan.get("seeds", 1)
    if default_seeds < 1:
        raise UserError(f"--seeds must be at least 1, got {default_seeds}.")
    common = plan.get("common") or {}
    listed = plan.get("methods") or []
    listed = [m.strip() for m in listed.split(",")] if isinstance(listed, str) else list(listed)
    known = {*PLAN_KEYS, *names, *listed}  # --methods may pick a subset of the plan's
    stray = sorted(set(plan) - known)
    if stray:
        raise UserError(
            f"plan {plan_file}: keys {stray} are neither settings nor listed methods. Add them to methods: or remove them."
        )
    cells = []
    for name in names:
        entry = dict(plan.get(name) or {})
        n_seeds = default_seeds if seeds is not None else entry.pop("seeds", default_seeds)
        entry.pop("seeds", None)
        config_ref = entry.pop("config", None)
        method = entry.pop("method", None) or (name if name in C.METHODS else None)
        base_file = None
        if config_ref:
            shipped = C.shipped_config_path(str(config_ref))
            base_file = str(shipped if shipped.is_file() else config_ref)
            found = C.read_yaml(base_file, f"the plan's `{name}: config:`")  # read before resolve() does
            method = method or found.get("method")
        if method is None:
            raise UserError(
                f"compare: {name!r} is not a method ({', '.join(C.METHODS)}); give it a config: or method: in the plan."
            )
        cfg = C.resolve(str(method), base_file, {})
        cfg = C.merge(cfg, common, f"plan {plan_file} common")
        cfg = C.merge(cfg, entry, f"plan {plan_file} {name}")
        cfg = C.merge(cfg, {k: v for k, v in flags.items() if v is not None}, "command line")
        cfg = C.absolute_paths(cfg.replace(name=name))
        C.validate(cfg)
        for size in sizes:  # each size samples its own training data with each seed
            sized = cfg if sizes == [None] else cfg.replace(train_size=size)
            cells += [Cell(name, cfg.seed + i, sized.replace(seed=cfg.seed + i)) for i in range(n_seeds)]
    _check_sizes(cells)
    return cells


def _check_sizes(cells: list[Cell]) -> None:
    """Sample every distinct train size once now, so a size the data cannot give fails before training."""
    from intentlab.data import dataset_for
    from intentlab.data.loading import sample_train

    loaded: dict[tuple[Any, ...], Any] = {}
    for cell in cells:
        size = C.parse_train_size(cell.cfg.train_size)
        if size is None:
            continue
        c = cell.cfg
        key = (
            c.data,
            c.data_dir,
            c.text_column,
            c.label_column,
            c.val_fraction,
            c.test_fraction,
            c.split_seed,
            c.oos_label,
            c.oos_as_class,
            c.group_column,
        )
        if key not in loaded:
            loaded[key] = dataset_for(c.replace(train_size=None))
        sample_train(loaded[key], size, c.seed)


def _eta(left: list[Cell], seconds: dict[str, list[float]]) -> str:
    """A rough time left: each cell costs what its method's finished cells cost (else the neural average)."""
    neural = [t for m, ts in seconds.items() if M.get(m).encoder for t in ts]
    if not left or not neural:
        return ""
    avg = sum(neural) / len(neural)
    total = sum(
        sum(seconds[c.cfg.method]) / len(seconds[c.cfg.method]) if c.cfg.method in seconds else avg
        for c in left
    )
    return f" (~{total / 60:.0f} min)"


def run_compare(
    out: str | Path,
    cells: list[Cell],
    report: bool = True,
    executor: str = "local",
    address: str | None = None,
    cell_cpus: int = 1,
    cell_gpus: float = 0,
) -> list[Path]:
    """Train every unfinished cell, printing progress across the whole matrix: one after another in
    local processes, or as Ray tasks on a local or existing cluster (`executor="ray"`). One compare per
    OUT at a time (a lock); each cell's run folder has its own lock too, so no cell runs twice at once."""
    from intentlab.training.executors import check_executor

    check_executor(executor, address, cell_cpus, cell_gpus)
    out = Path(out)
    check_folder_path(out)
    with FolderLock(out).acquire(f"compare folder {out}"):
        if (out / RUN_MARKER).is_file():
            raise UserError(
                f"--out {out} is a run folder (it holds {RUN_MARKER}); compare writes a folder of runs. "
                "Choose another --out."
            )
        finished = sum(is_complete(c.path(out)) for c in cells)
        _check_finished_cells(out, cells)
        print(f"compare: {len(cells)} cells ({finished} already complete) -> {out}", flush=True)
        if executor == "ray":
            from intentlab.training.executors import run_ray

            run_ray(out, cells, address, cell_cpus, cell_gpus)
        else:
            _run_local(out, cells)
        if report:
            from intentlab.reporting.report import build_report

            build_report([out], out / "report")
            print(f"report: {out / 'report' / 'report.md'} and {out / 'report' / 'report.html'}", flush=True)
    return [c.path(out) for c in cells]


# settings that change how a run executes or where it logs, not what it learns
EXECUTION_ONLY = frozenset(
    {"data_dir", "threads", "track", "tracking_uri", "checkpoint_steps", "eval_batch_size", "compile"}
)


def _check_finished_cells(out: Path, cells: list[Cell]) -> None:
    """A finished cell is reused only if it was trained as the plan now says: after a shipped default
    changes (or the plan is edited), reusing it would report an old configuration under the new name."""
    from dataclasses import asdict

    from intentlab.runs import read_config

    for cell in cells:
        path = cell.path(out)
        if not is_complete(path):
            continue
        recorded = asdict(read_config(path))
        diff = [
            (k, v, recorded.get(k))
            for k, v in asdict(cell.cfg).items()
            if v is not None
            and k not in EXECUTION_ONLY
            and recorded.get(k) != v
            and not _resolved_in_training(k, v, recorded)
        ]
        if diff:
            key, planned, was = diff[0]
            more = f" (and {len(diff) - 1} more settings)" if len(diff) > 1 else ""
            raise UserError(
                f"compare: {path} was trained with {key}={was!r}, but the plan now gives {key}={planned!r}{more}. "
                f"Move that cell away to retrain it, or set {key}: {was!r} for {cell.name} in the plan to reuse it."
            )


def _resolved_in_training(key: str, planned: Any, recorded: dict[str, Any]) -> bool:
    """Values training itself changes and records (more epochs to reach `min_steps` on small data,
    `max_length` clipped to the model's limit), or leaves unresolved where they do not apply."""
    was = recorded.get(key)
    if key == "epochs":
        return bool(recorded.get("min_steps")) and isinstance(was, int) and was > planned
    if key == "max_length":
        return isinstance(was, int) and was < planned
    if key in ("bf16", "attention") and was is None:  # a method without a network never resolves them
        return True
    if key == "min_steps":  # a floor for small samples: a whole-data run's epochs already exceed it
        return recorded.get("train_size") is None  # (epochs are compared on their own)
    if key == "model" and isinstance(was, str) and Path(was).expanduser().is_dir():
        return (
            str(Path(was).expanduser().resolve()) == planned
        )  # recorded relative, before paths were absolute
    return False


def _run_local(out: Path, cells: list[Cell]) -> None:
    seconds: dict[str, list[float]] = {}  # per method, for the time estimate
    for i, cell in enumerate(cells, 1):
        path = cell.path(out)
        where = f"[{i}/{len(cells)}] {tag(cell)}"
        if is_complete(path):
            print(f"{where}: complete, skipped", flush=True)
            continue
        print(f"{where}: training ...", flush=True)
        t0 = time.perf_counter()
        result = run_cell(cell, path)
        seconds.setdefault(cell.cfg.method, []).append(time.perf_counter() - t0)
        left = [c for c in cells[i:] if not is_complete(c.path(out))]
        print(
            f"{where}: test accuracy {result.test.accuracy:.4f}, macro-F1 {result.test.f1_macro:.4f} "
            f"in {seconds[cell.cfg.method][-1]:.0f} s; {len(left)} cells left{_eta(left, seconds)}",
            flush=True,
        )
