"""Shared fixtures: synthetic videos and PDFs made in code, real files from ../shared/data when present."""

from __future__ import annotations

import importlib.util
import os
import sys
from pathlib import Path

import pytest

from longvlm.testing import write_barcode_video, write_synthetic_pdf

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(os.environ.get("LONGVLM_SHARED_DATA", REPO.parent / "shared" / "data"))


@pytest.fixture(scope="session")
def load_script():
    """Import a file of scripts/ or bench/ (not a package) as a module: `load_script("scripts/train.py")`."""
    loaded = []

    def load(relative: str):
        name = "longvlm_script_" + Path(relative).stem
        spec = importlib.util.spec_from_file_location(name, REPO / relative)
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module  # its dataclasses look their module up while being created
        spec.loader.exec_module(module)
        loaded.append(name)
        return module

    yield load
    for name in loaded:
        sys.modules.pop(name, None)


@pytest.fixture(scope="session")
def fixture_dir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("fixtures")


@pytest.fixture(scope="session")
def short_video(fixture_dir) -> str:
    """30 s, 10 fps, 64x64 barcode video, scene change every 10 s."""
    return write_barcode_video(fixture_dir / "short.mp4", 30, fps=10, scene_seconds=10)


@pytest.fixture(scope="session")
def ten_minute_video(fixture_dir) -> str:
    """10 min, 5 fps, 96x128 barcode video."""
    return write_barcode_video(fixture_dir / "ten_min.mp4", 600, fps=5, height=96, width=128)


@pytest.fixture(scope="session")
def sixty_page_pdf(fixture_dir) -> str:
    return write_synthetic_pdf(fixture_dir / "sixty.pdf", 60)


@pytest.fixture(scope="session")
def shared_media() -> Path:
    path = SHARED_DATA / "media"
    if not path.is_dir():
        pytest.skip(f"real media not found at {path}")
    return path


@pytest.fixture(scope="session")
def shared_pdfs() -> list[Path]:
    path = SHARED_DATA / "mmlongbench-doc" / "documents"
    files = sorted(path.glob("*.pdf")) if path.is_dir() else []
    if not files:
        pytest.skip(f"MMLongBench-Doc PDFs not found at {path}")
    return files
