"""The architecture's promises: methods are data, and there is one inference path whose device and
precision are chosen for the machine that runs it."""

from __future__ import annotations

import ast
import json
import re
from pathlib import Path

import numpy as np
import pytest
import yaml

from conftest import tiny_args
from intentlab import methods as M
from intentlab.cli import main

SRC = Path(__file__).resolve().parents[1] / "src" / "intentlab"


@pytest.mark.parametrize("name", M.NAMES)
def test_every_method_declares_its_files_and_behaviour(name: str) -> None:
    """Each table entry's shipped config and sweep space exist and load; its storage kind has a class,
    its regime a trainer, its peft type a builder."""
    from intentlab.config import METHODS, resolve
    from intentlab.models.adapters import BUILDERS
    from intentlab.models.storage import STORAGES
    from intentlab.training.sweep import load_space
    from intentlab.training.trainers import TRAINERS

    method = M.get(name)
    assert tuple(METHODS) == M.NAMES
    assert yaml.safe_load(method.config_file.read_text())["method"] == name
    assert resolve(name, None, {}).method == name
    assert load_space(name, None), f"{method.sweep_file} is empty"
    assert STORAGES[method.storage].kind == method.storage
    assert method.regime in TRAINERS
    assert method.peft_type is None or method.peft_type in BUILDERS


def _kind_comparisons(tree: ast.AST) -> list[tuple[int, str]]:
    """Comparisons against a storage kind: its name as a literal, or its constant (FULL, HEAD...)."""
    kinds, constants = set(M.STORAGE_KINDS), {"FULL", "HEAD", "ADAPTER", "TFIDF"}
    hits = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Compare):
            for side in (node.left, *node.comparators):
                literal = isinstance(side, ast.Constant) and side.value in kinds
                constant = isinstance(side, ast.Name | ast.Attribute) and (
                    getattr(side, "id", None) in constants or getattr(side, "attr", None) in constants
                )
                if literal or constant:
                    hits.append((node.lineno, ast.unparse(side)))
    return hits


def test_only_the_storage_classes_know_what_each_storage_kind_is() -> None:
    offenders = [
        f"{path.relative_to(SRC)}:{line}: {what}"
        for path in sorted(SRC.rglob("*.py"))
        if path not in (SRC / "methods.py", SRC / "models" / "storage.py")
        for line, what in _kind_comparisons(ast.parse(path.read_text()))
    ]
    assert not offenders, offenders


def test_the_method_table_names_no_code_by_string() -> None:
    """No "module:function" strings (importlib lookups no tool can follow) in the method table."""
    text = (SRC / "methods.py").read_text()
    assert "importlib" not in text and not re.search(r"[\"']intentlab\.[\w.]+:\w+[\"']", text)


def test_the_import_contracts_hold_and_nothing_imports_in_a_circle() -> None:
    """import-linter's contracts (pyproject.toml: layers, torch-free reports and contracts, no cycles
    between siblings) and, module by module, no import cycle at all."""
    import grimp
    import networkx as nx
    from importlinter import api  # noqa: F401  (the package the contracts are checked with)
    from importlinter.cli import lint_imports

    assert lint_imports(config_filename=str(SRC.parents[1] / "pyproject.toml")) == 0
    graph = grimp.build_graph("intentlab", exclude_type_checking_imports=True)
    edges = nx.DiGraph((a, b) for a in graph.modules for b in graph.find_modules_directly_imported_by(a))
    cycles = [sorted(c) for c in nx.strongly_connected_components(edges) if len(c) > 1]
    assert not cycles, cycles


def _method_literals(tree: ast.AST) -> list[tuple[int, str]]:
    """Comparisons against a method-name literal, and collections of two or more method names."""
    names = set(M.NAMES)
    hits = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Compare):
            for side in (node.left, *node.comparators):
                if isinstance(side, ast.Constant) and side.value in names:
                    hits.append((node.lineno, side.value))
        if isinstance(node, ast.Tuple | ast.List | ast.Set):
            found = [e.value for e in node.elts if isinstance(e, ast.Constant) and e.value in names]
            if len(found) >= 2:
                hits.append((node.lineno, ",".join(found)))
    return hits


def test_no_module_but_the_method_table_branches_on_a_method_name() -> None:
    offenders = []
    for path in sorted(SRC.rglob("*.py")):
        if path == SRC / "methods.py":
            continue
        for line, name in _method_literals(ast.parse(path.read_text())):
            offenders.append(f"{path.relative_to(SRC)}:{line}: {name}")
    assert not offenders, offenders


@pytest.fixture(scope="module")
def lora_run(tmp_path_factory: pytest.TempPathFactory, tiny_model: str, toy_data: str) -> Path:
    out = tmp_path_factory.mktemp("arch") / "lora"
    assert main(["train", "--method", "lora", "--out", str(out), *tiny_args(tiny_model, toy_data, 2)]) == 0
    return out


def test_predict_serve_and_evaluate_give_identical_probabilities(lora_run: Path) -> None:
    pytest.importorskip("fastapi")
    from fastapi.testclient import TestClient

    from intentlab.data import dataset_for
    from intentlab.inference.engine import softmax
    from intentlab.inference.evaluate import evaluate_run
    from intentlab.inference.metrics import metrics
    from intentlab.inference.opener import open_run
    from intentlab.runs import read_config
    from intentlab.serving.app import create_app

    texts = ["i lost my card", "how do i top up my account", "what exchange rate do you use", "hello?"]
    predictor = open_run(lora_run)
    predicted = predictor.predict(texts, top_k=4)
    with TestClient(create_app([str(lora_run)])) as client:
        served = client.post("/v1/predict", json={"texts": texts, "top_k": 4}).json()["predictions"]
    for mine, theirs in zip(predicted, served, strict=True):
        assert [(p["intent"], p["probability"]) for p in theirs["intents"]] == mine  # bit for bit
    # evaluate scores the test split through the same path: its numbers are those of the predictor's logits
    ds = dataset_for(read_config(lora_run))
    logits = predictor.logits(ds.test.texts)
    assert evaluate_run(lora_run) == metrics(ds.ids(ds.test), logits, ds.labels)
    assert np.array_equal(softmax(logits).argmax(1), logits.argmax(1))


def test_training_steps_keep_their_attention_kernel_and_evaluation_borrows_inferences(
    tiny_model: str,
) -> None:
    from intentlab.config import resolve
    from intentlab.models.build import build_model
    from intentlab.models.classifier import classifier_of
    from intentlab.models.speed import inference_attention

    model = build_model(resolve("lora", None, {"model": tiny_model, "attention": "eager"}), 4)
    config = classifier_of(model).encoder.config
    assert config._attn_implementation == "eager"
    with inference_attention(model):
        assert config._attn_implementation == classifier_of(model).inference_attention == "sdpa"
    assert config._attn_implementation == "eager"


@pytest.mark.parametrize("method", ["lora", "head"])
def test_scores_recorded_in_training_come_from_the_inference_path(
    tmp_path: Path, tiny_model: str, toy_data: str, method: str
) -> None:
    """Training steps may run another attention kernel than inference (eager, the default under CPU
    bf16); the validation and test scores a run records, and a frozen encoder's cached features, still
    come from the kernel a reloaded run runs, so `evaluate` gives back the recorded numbers exactly."""
    from intentlab.inference.evaluate import evaluate_run

    out = tmp_path / method
    args = ["train", "--method", method, "--attention", "eager", "--out", str(out)]
    assert main([*args, *tiny_args(tiny_model, toy_data, 2)]) == 0
    assert yaml.safe_load((out / "config.yaml").read_text())["attention"] == "eager"
    recorded = json.loads((out / "result.json").read_text())["test"]
    scores = evaluate_run(out)
    assert (scores["loss"], scores["accuracy"]) == (recorded["loss"], recorded["accuracy"])


def test_a_bf16_run_scored_without_fast_bf16_runs_in_fp32(
    lora_run: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import shutil

    from intentlab import hardware
    from intentlab.inference.opener import open_run

    run = tmp_path / "bf16-run"
    shutil.copytree(lora_run, run)
    cfg = yaml.safe_load((run / "config.yaml").read_text())
    (run / "config.yaml").write_text(yaml.safe_dump({**cfg, "bf16": True}))  # as if trained on a bf16 machine
    texts = ["i lost my card", "rate for converting pounds"]
    monkeypatch.setattr(hardware, "cpu_flags", lambda: frozenset({"avx2"}))  # an AVX2-only CPU
    slow_cpu = open_run(run)
    assert slow_cpu.backend.placement.bf16 is False and slow_cpu.backend.placement.device.type == "cpu"
    fp32 = open_run(lora_run, bf16=False)
    assert np.array_equal(slow_cpu.logits(texts), fp32.logits(texts))
    monkeypatch.setattr(hardware, "cpu_flags", lambda: frozenset({"avx2", "avx512_bf16"}))
    assert open_run(run).backend.placement.bf16 is True  # where bf16 is fast, the run's choice holds
    assert open_run(lora_run).backend.placement.bf16 is False  # an fp32 run never turns bf16


@pytest.mark.parametrize(
    ("flags", "cap", "fast", "kind"),
    [
        ({"avx2", "amx_bf16", "avx512_bf16"}, None, True, "fast bf16 (avx512_bf16, amx_bf16)"),
        (
            {"avx2", "amx_bf16", "avx512_bf16"},
            "avx2",
            False,
            "no fast bf16 (AVX2: bf16 is emulated), oneDNN capped at AVX2",
        ),
        (
            {"avx2", "amx_bf16", "avx512_bf16"},
            "AVX512_CORE_BF16",
            True,
            "fast bf16 (avx512_bf16), oneDNN capped at AVX512_CORE_BF16",
        ),
        (
            {"avx2", "avx512_bf16"},
            "AVX512_CORE_VNNI",
            False,
            "no fast bf16 (AVX2: bf16 is emulated), oneDNN capped at AVX512_CORE_VNNI",
        ),
        ({"avx2", "avx512_bf16"}, "ALL", True, "fast bf16 (avx512_bf16)"),
        (
            {"avx2"},
            "AVX512_CORE_AMX",
            False,
            "no fast bf16 (AVX2: bf16 is emulated), oneDNN capped at AVX512_CORE_AMX",
        ),
    ],
)
def test_a_onednn_instruction_cap_decides_whether_bf16_is_fast(
    flags: set[str], cap: str | None, fast: bool, kind: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """ONEDNN_MAX_CPU_ISA=AVX2 keeps oneDNN off the bf16 units, where bf16 is emulated and slow: intentlab
    then trains in fp32 and records the cap in the run's machine kind."""
    from intentlab import hardware

    monkeypatch.setattr(hardware, "cpu_flags", lambda: frozenset(flags))
    monkeypatch.delenv("DNNL_MAX_CPU_ISA", raising=False)
    if cap is None:
        monkeypatch.delenv("ONEDNN_MAX_CPU_ISA", raising=False)
    else:
        monkeypatch.setenv("ONEDNN_MAX_CPU_ISA", cap)
    assert hardware.fast_bf16("cpu") is fast
    assert hardware.machine_kind() == kind


@pytest.mark.parametrize("pooling", ["cls", "mean"])
def test_unmerged_export_is_verified_from_the_exported_files(
    pooling: str, tmp_path: Path, tiny_model: str, toy_data: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Export verification reloads what it wrote: a wrong adapter in the export is caught, on the
    standard peft path ([CLS]) and on intentlab's own (mean pooling)."""
    import shutil

    from intentlab.deploy import export
    from intentlab.errors import UserError

    run, other = tmp_path / "run", tmp_path / "other"
    args = [*tiny_args(tiny_model, toy_data, 1), "--pooling", pooling]
    assert main(["train", "--method", "lora", "--out", str(run), *args]) == 0
    assert main(["train", "--method", "lora", "--out", str(other), *args, "--seed", "7"]) == 0

    if pooling == "mean":
        copytree = shutil.copytree

        def copy_the_wrong_run(src: Path, dst: Path, *a: object, **kw: object) -> object:
            wrong = other / "model" / "adapter" if Path(src) == run / "model" / "adapter" else src
            return copytree(wrong, dst, *a, **kw)

        monkeypatch.setattr(export.shutil, "copytree", copy_the_wrong_run)
    else:
        from intentlab.deploy import hf

        write = hf.write_standard_adapter

        def write_the_wrong_run(folder: Path, *a: object) -> object:
            return write(other / "model", *a)

        monkeypatch.setattr(hf, "write_standard_adapter", write_the_wrong_run)
    with pytest.raises(UserError, match="does not reproduce"):
        export.export_run(run, tmp_path / "export")
    assert not (tmp_path / "export").exists()
    monkeypatch.undo()
    report = export.export_run(run, tmp_path / "export")
    art = report["artifacts"]["peft adapter" if pooling == "cls" else "intentlab adapter"]
    assert art["top1_agreement"] == 1.0 and art["max_prob_diff"] <= art["tolerance"]
    assert json.loads((tmp_path / "export" / "export_verification.json").read_text())["n"] == report["n"]


def test_the_repository_tracks_no_pickles_or_training_leftovers() -> None:
    """A test once left the setfit library's ./checkpoints (optimizer.pt, training_args.bin: pickles)
    in the working tree, and it was committed."""
    import shutil
    import subprocess

    root = Path(__file__).parents[1]
    if not (root / ".git").exists() or not shutil.which("git"):
        pytest.skip("not a git checkout")
    tracked = subprocess.run(["git", "ls-files"], cwd=root, capture_output=True, text=True, check=True).stdout
    bad = [f for f in tracked.splitlines() if f.endswith((".pt", ".pth", ".bin", ".pkl", ".joblib"))]
    bad += [f for f in tracked.splitlines() if f.startswith(("checkpoints/", "runs/"))]
    assert not bad, bad
