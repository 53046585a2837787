"""Config: shipped configs load, precedence is right, and every bad value is reported at once."""

from __future__ import annotations

from pathlib import Path

import pytest

from intentlab import config as C
from intentlab.errors import UserError

REPO_CONFIGS = sorted((Path(__file__).parents[1] / "configs").glob("*.yaml"))


def test_repo_configs_are_the_shipped_ones() -> None:
    assert sorted(p.stem for p in REPO_CONFIGS) == C.shipped_config_names()
    assert {"full", "lora", "dora", "ia3", "head", "lora-study"} <= set(C.shipped_config_names())


@pytest.mark.parametrize("path", REPO_CONFIGS, ids=lambda p: p.stem)
def test_every_shipped_config_loads_and_validates(path: Path) -> None:
    cfg = C.resolve(None, str(path), {})
    assert cfg.method in C.METHODS
    raw = C.read_yaml(path)
    for key, value in raw.items():
        assert getattr(cfg, key) == C.coerce(key, value), key


def test_method_defaults_apply_and_flags_win() -> None:
    lora = C.resolve("lora", None, {})
    full = C.resolve("full", None, {})
    assert lora.lr > 5 * full.lr  # LoRA needs a much higher learning rate than full fine-tuning
    cfg = C.resolve(
        "lora", None, {"lr": "0.01", "lora_r": "4", "target_modules": "query,value", "bf16": False}
    )
    assert (cfg.lr, cfg.lora_r, cfg.target_modules, cfg.bf16) == (0.01, 4, ["query", "value"], False)


def test_user_config_sits_between_shipped_and_flags(tmp_path: Path) -> None:
    f = tmp_path / "c.yaml"
    f.write_text("method: lora\nepochs: 2\nlora_r: 4\n")
    cfg = C.resolve(None, str(f), {"epochs": "3"})
    assert (cfg.epochs, cfg.lora_r, cfg.lr) == (3, 4, C.resolve("lora", None, {}).lr)


def test_all_problems_reported_together() -> None:
    with pytest.raises(UserError) as e:
        C.resolve("lora", None, {"lr": "nan", "epochs": "-1", "batch_size": "0", "dropout": "1.5"})
    msg = str(e.value)
    for part in ("lr must be a finite number", "epochs must be at least 1", "batch_size", "dropout"):
        assert part in msg
    assert "\n" not in msg


@pytest.mark.parametrize(
    ("flags", "needle"),
    [
        ({"epochs": "two"}, "expected an integer"),
        ({"epochs": "1.5"}, "expected an integer"),
        ({"lr": "fast"}, "expected a number"),
        ({"lr": "inf"}, "finite"),
        ({"lr": "-1e-3"}, "lr must be positive"),
        ({"val_fraction": "0.9"}, "val_fraction"),
        ({"pooling": "max"}, "pooling must be one of"),
        ({"max_length": "4"}, "max_length"),
        ({"attention": "flash"}, "attention must be sdpa or eager"),
    ],
)
def test_bad_values(flags: dict[str, str], needle: str) -> None:
    with pytest.raises(UserError, match=needle):
        C.resolve("full", None, flags)


def test_unknown_yaml_key_suggests_the_right_one(tmp_path: Path) -> None:
    f = tmp_path / "c.yaml"
    f.write_text("method: lora\nlearning_rate: 0.1\nlora_rank: 4\n")
    with pytest.raises(UserError) as e:
        C.resolve(None, str(f), {})
    # the suggestion itself, not the echoed 'lora_rank' (which holds "lora_r" too)
    assert "unknown key 'learning_rate'" in str(e.value)
    assert "unknown key 'lora_rank' (did you mean 'lora_r'?)" in str(e.value)


@pytest.mark.parametrize(
    ("text", "needle"),
    [("method: [unclosed\n", "not valid UTF-8 YAML"), ("- a\n- b\n", "must hold a mapping")],
)
def test_malformed_yaml(tmp_path: Path, text: str, needle: str) -> None:
    f = tmp_path / "c.yaml"
    f.write_text(text)
    with pytest.raises(UserError, match=needle):
        C.resolve(None, str(f), {})


def test_contradictory_and_missing_method(tmp_path: Path) -> None:
    f = tmp_path / "c.yaml"
    f.write_text("method: lora\n")
    with pytest.raises(UserError, match="contradicts"):
        C.resolve("full", str(f), {})
    with pytest.raises(UserError, match="no method given"):
        C.resolve(None, None, {})
    with pytest.raises(UserError, match="unknown method 'xlora'"):
        C.resolve("xlora", None, {})
    with pytest.raises(UserError, match="not found"):
        C.resolve(None, str(tmp_path / "missing.yaml"), {})


def test_yaml_roundtrip() -> None:
    cfg = C.resolve("dora", None, {"seed": "5"})
    again = C.merge(C.Config(), C.yaml.safe_load(cfg.to_yaml()), "roundtrip")
    assert again == cfg


@pytest.mark.parametrize(
    "plan", sorted((Path(__file__).parents[1] / "configs" / "compare").glob("*.yaml")), ids=lambda p: p.stem
)
def test_every_shipped_compare_plan_resolves(plan: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from intentlab.training import compare

    # the structure only: sampling the train sizes needs Banking77 (tests/test_learning_curve.py covers it)
    monkeypatch.setattr(compare, "_check_sizes", lambda cells: None)
    cells = compare.plan_cells(None, None, {}, str(plan))
    assert cells and all(c.cfg.method in C.METHODS for c in cells)
    assert len({c.path(Path("OUT")) for c in cells}) == len(cells)  # no two cells share a run folder


@pytest.mark.parametrize(
    "space", sorted((Path(__file__).parents[1] / "configs" / "sweep").glob("*.yaml")), ids=lambda p: p.stem
)
def test_every_shipped_sweep_space_loads(space: Path) -> None:
    from intentlab.training.sweep import check_space_values, load_space

    loaded = load_space(space.stem, str(space))
    assert loaded
    check_space_values(C.resolve(space.stem, None, {}), loaded, str(space))  # every choice and bound is valid


def test_methods_flag_picks_a_subset_of_a_plan(tmp_path: Path) -> None:
    from intentlab.training.compare import plan_cells

    plan = tmp_path / "plan.yaml"
    plan.write_text("methods: [baseline, lora]\nseeds: 2\nlora: {lora_r: 4}\n")
    cells = plan_cells(["baseline"], None, {}, str(plan))  # lora's section belongs to the plan, not a stray
    assert [c.cfg.method for c in cells] == ["baseline", "baseline"]
    plan.write_text("methods: [baseline]\nlroa: {lora_r: 4}\n")
    with pytest.raises(UserError, match="neither settings nor listed methods"):
        plan_cells(None, None, {}, str(plan))
