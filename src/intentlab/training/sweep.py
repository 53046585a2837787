"""`intentlab sweep`: Optuna hyper-parameter search; every trial is an ordinary run folder.

    intentlab sweep --method lora --trials 20 --out sweeps/lora
    intentlab sweep --method lora --trials 40 --out sweeps/lora --storage postgresql://user@db/optuna   # per worker

The search space is YAML (`configs/sweep/<method>.yaml`, or `--space FILE`): for each config field,
`{type: float|int|categorical, low, high, log, choices}`. Validation accuracy after each epoch is
reported to Optuna; the median pruner stops hopeless trials (they are still recorded, as pruned runs).
The study lives in SQLite (`OUT/study.db`) by default; given a PostgreSQL URL, any number of workers on
any number of machines share it. `--trials` is the study's total: every worker stops once that many
trials have finished. At the end the best configuration is printed and written as `OUT/best.yaml`,
which `intentlab train --config` accepts.
"""

from __future__ import annotations

import contextlib
import math
import random
import time
from pathlib import Path
from typing import Any

import yaml

from intentlab import config as C
from intentlab.errors import UserError
from intentlab.folders import check_folder_path, write_text_atomic
from intentlab.methods import METHODS, NAMES
from intentlab.runs import EpochRow

KINDS = ("float", "int", "categorical")
SWEEP_ENTRIES = ("study.db", "best.yaml", "trials")  # what a sweep writes into its --out


def load_space(method: str, path: str | None) -> dict[str, dict[str, Any]]:
    """The search space for `method`, checked: known fields, known kinds, sane bounds."""
    source = path or str(METHODS[method].sweep_file)
    space = C.read_yaml(source, "--space")
    problems = [p for name, spec in space.items() if (p := _spec_problem(name, spec))]
    if problems:
        raise UserError(f"search space {source}: {'; '.join(problems)}. Fix the space file.")
    return space


def _spec_problem(name: str, spec: Any) -> str | None:
    """What is wrong with one field's entry of a search space (None: nothing)."""
    if name not in C.FIELDS or name in ("method", "name", "seed", "data", "data_dir", "model"):
        return f"{name!r} is not a searchable config field"
    if not isinstance(spec, dict) or spec.get("type") not in KINDS:
        return f"{name}: needs type: one of {', '.join(KINDS)}"
    if spec["type"] == "categorical":
        choices = spec.get("choices")
        if not (isinstance(choices, list) and choices):
            return f"{name}: categorical needs a list of choices"
        if not all(c is None or isinstance(c, bool | int | float | str) for c in choices):
            return f"{name}: choices must be numbers, text, true/false or null"
        return None
    low, high = spec.get("low"), spec.get("high")
    number = (int,) if spec["type"] == "int" else (int, float)
    if not all(isinstance(v, number) and not isinstance(v, bool) and math.isfinite(v) for v in (low, high)):
        return f"{name}: needs {'whole' if spec['type'] == 'int' else 'finite'} numbers low and high"
    if low > high:
        return f"{name}: needs low <= high"
    if spec.get("log") and low <= 0:
        return f"{name}: log: true needs low > 0"
    return None


def check_space_values(base: C.Config, space: dict[str, dict[str, Any]], source: str) -> None:
    """Every choice and bound of the space must make a valid config, found before any trial runs."""
    problems = []
    for name, spec in space.items():
        values = spec["choices"] if spec["type"] == "categorical" else [spec["low"], spec["high"]]
        for value in values:
            try:
                C.validate(base.replace(**{name: C.coerce(name, value)}))
            except (ValueError, UserError) as e:  # coerce's, validate's
                problems.append(f"{name}: {value!r}: {str(e).removeprefix('invalid config: ').rstrip('.')}")
                break
    if problems:
        raise UserError(f"search space {source}: {'; '.join(problems)}. Fix the space file.")


def suggest(trial: Any, space: dict[str, dict[str, Any]]) -> dict[str, Any]:
    params = {}
    for name, spec in space.items():
        if spec["type"] == "float":
            params[name] = trial.suggest_float(name, spec["low"], spec["high"], log=bool(spec.get("log")))
        elif spec["type"] == "int":
            params[name] = trial.suggest_int(
                name, int(spec["low"]), int(spec["high"]), log=bool(spec.get("log"))
            )
        else:
            params[name] = trial.suggest_categorical(name, spec["choices"])
    return params


def _schema_race(e: Exception) -> bool:
    """True for the errors of two workers creating Optuna's tables at once on an empty database:
    a duplicate row (IntegrityError) or an object another worker just created (DuplicateTable/Object)."""
    name = type(e).__name__
    return name == "IntegrityError" or (name == "ProgrammingError" and "already exists" in str(e))


def _open_study(optuna: Any, name: str, storage: str, pruner: Any, attempts: int = 8) -> Any:
    """Create or join a study. Workers that start together on an empty database race to create its
    tables and the study row; the losers get a schema-race error, and a retry joins the winner's study."""
    for attempt in range(attempts):
        try:
            return optuna.create_study(
                study_name=name, storage=storage, direction="maximize", load_if_exists=True, pruner=pruner
            )
        except Exception as e:
            if not _schema_race(e) or attempt == attempts - 1:
                raise
            time.sleep(0.5 + random.random() * (attempt + 1))
    raise AssertionError("unreachable")


def run_sweep(
    method: str,
    trials: int,
    out: str | Path,
    flags: dict[str, Any],
    storage: str | None = None,
    study_name: str | None = None,
    space_file: str | None = None,
    pruner: str = "median",
) -> dict[str, Any]:
    """Run trials until the study holds `trials` finished ones; returns the best trial's summary."""
    optuna = _import_optuna()
    from optuna.study import MaxTrialsCallback
    from optuna.trial import TrialState

    if method not in METHODS:
        raise UserError(f"unknown method {method!r}. Choose one of {', '.join(NAMES)}.")
    if trials < 1:
        raise UserError(f"--trials must be at least 1, got {trials}.")
    base = C.resolve(method, None, flags)  # validates method and flags before any trial
    space = load_space(method, space_file)
    check_space_values(base, space, space_file or f"sweep/{method}")
    out = Path(out)
    check_sweep_folder(out)
    made = not out.exists()
    out.mkdir(parents=True, exist_ok=True)
    storage = storage or f"sqlite:///{(out / 'study.db').resolve()}"
    name = study_name or f"{method}-{base.data if base.data == 'banking77' else Path(base.data).name}"
    try:
        study = _study(optuna, name, storage, pruner)
    except UserError:
        if made:  # leave no folder behind that this call made (rmdir: only while it is empty)
            with contextlib.suppress(OSError):
                out.rmdir()
        raise
    done = (TrialState.COMPLETE, TrialState.PRUNED)
    objective = _objective(optuna, base, space, out)
    study.optimize(objective, callbacks=[MaxTrialsCallback(trials, states=done)], catch=())
    finished = [t for t in study.get_trials(deepcopy=False) if t.state in done]
    if not any(t.state == TrialState.COMPLETE for t in finished):
        raise UserError(
            f"no trial of study {name!r} completed (all {len(finished)} pruned or failed). Widen the space."
        )
    best = study.best_trial
    best_cfg = C.merge(base, best.params, "best trial").replace(name=None)
    text = (
        f"# best of {len(finished)} trials of study {name!r} ({storage.split('://')[0]}): "
        f"validation accuracy {best.value:.4f}, trial {best.number}\n" + best_cfg.to_yaml()
    )
    write_text_atomic(out / "best.yaml", text)
    return {
        "study": name,
        "storage": storage,
        "best_value": best.value,
        "best_trial": best.number,
        "best_params": best.params,
        "finished": len(finished),
        "pruned": sum(t.state == TrialState.PRUNED for t in finished),
        "best_config": str(out / "best.yaml"),
        "space": yaml.safe_dump(space),
    }


def check_sweep_folder(out: Path) -> None:
    """A sweep writes into a new or empty folder, or resumes its own: never into a run's or a user's."""
    check_folder_path(out)
    if not out.is_dir():
        return
    foreign = sorted(
        p.name
        for p in out.iterdir()
        if not p.name.startswith(".") and p.name not in SWEEP_ENTRIES and not p.name.startswith("study.db")
    )
    if foreign:
        raise UserError(
            f"--out {out} holds {', '.join(foreign[:5])}, which a sweep did not write. A sweep writes into "
            "a new folder or resumes its own: choose another --out."
        )


def _import_optuna() -> Any:
    try:
        import optuna
    except ImportError:
        raise UserError("intentlab sweep needs optuna. Run: pip install 'intentlab[sweep]'.") from None
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    return optuna


def _study(optuna: Any, name: str, storage: str, pruner: str) -> Any:
    """Create or join the study, as a one-line error when the storage cannot be opened."""
    chosen = (
        optuna.pruners.MedianPruner(n_startup_trials=2, n_warmup_steps=1)
        if pruner == "median"
        else optuna.pruners.NopPruner()
    )
    try:
        return _open_study(optuna, name, storage, chosen)
    except Exception as e:
        raise UserError(
            f"cannot open the Optuna study at {storage!r} ({type(e).__name__}: {str(e).splitlines()[0][:160]}). "
            "Check --storage (e.g. sqlite:///study.db or postgresql://user:pass@host/db)."
        ) from None


def _objective(optuna: Any, base: C.Config, space: dict[str, dict[str, Any]], out: Path) -> Any:
    """One trial: a config from the space, an ordinary run folder trained by the method's trainer,
    validation accuracy per epoch reported for pruning; the best epoch's validation accuracy is the
    objective."""
    from intentlab.training.trainers import trainer_for

    train = trainer_for(base.method)

    def objective(trial: Any) -> float:
        cfg = C.merge(base, suggest(trial, space), f"trial {trial.number}")
        cfg = cfg.replace(name=f"{base.method}-trial-{trial.number:04d}")
        C.validate(cfg)

        def report(row: EpochRow) -> bool:
            trial.report(row.val_accuracy, row.epoch)
            return trial.should_prune()

        run = out / "trials" / f"trial-{trial.number:04d}"
        result = train(cfg, run, overwrite=run.exists(), on_epoch=report)
        trial.set_user_attr("run", str(run))
        trial.set_user_attr("test_accuracy", result.test.accuracy)
        if result.train.pruned:
            raise optuna.TrialPruned()
        return result.train.best_val_accuracy

    return objective
