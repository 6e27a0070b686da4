"""Every bad or awkward input ends cleanly and bounded, through the CLI exactly as a user runs it.

Each case runs `longvlm ...` in a fresh process (defaults as shipped: no --model, so the text route for `ask`
unless the case names the VLM route, whose default is the shipped small model) from a working folder where
the files have short relative names, and checks:
- "error": exit code 2, no traceback, one line `longvlm: error: <file as given>: <problem>` (the last line of
  stderr), naming the file as the user typed it (no absolute or temporary path);
- "answer": exit code 0 and an answer printed; "warn": the same plus a `longvlm: warning:` line naming the file;
- always: wall time under 60 s and peak RSS under 2 GiB (the process's own high-water mark, VmHWM).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pytest

from bad_input_files import (write_blank_png, write_frames, write_png_as_pdf, write_scanned_pdf,
                             write_truncated_mp4, write_wide_pdf)
from conftest import REPO, SHARED_DATA

ARTIFACTS = REPO / "artifacts"
WALL_LIMIT_S = 60.0
RSS_LIMIT_MB = 2048.0
QUESTION = "What is written here?"


@dataclass
class Case:
    """One CLI run: its arguments (file names relative to the working folder), the expected outcome and the
    file(s) it needs (names made by `make_inputs`)."""

    argv: list[str]
    expect: str  # "error" | "answer" | "warn"
    names: str = ""  # the file the error/warning must name as given ("" : none)
    mentions: tuple[str, ...] = ()  # words the error/warning line must contain (lower case)
    check: object = None  # optional callable(stdout) for extra checks on an answer
    marks: list = field(default_factory=list)


def _one_frame_sampled(stdout: str) -> None:
    record = json.loads(stdout)
    assert record["stats"]["frames_sampled"] == 1, record["stats"]


def _reported_as_image(stdout: str) -> None:
    assert json.loads(stdout)["type"] == "image", stdout


def _says_what_ocr_skipped(stdout: str) -> None:
    record = json.loads(stdout)
    text = json.dumps(record["stats"]).lower()
    assert "skipped" in text and "ocr" in text, record["stats"]


CASES = {
    # a PNG renamed .pdf
    "png-as-pdf-text": Case(["ask", "--pdf", "fake.pdf", "-q", QUESTION], "error", "fake.pdf"),
    "png-as-pdf-vlm": Case(["ask", "--route", "vlm", "--pdf", "fake.pdf", "-q", QUESTION], "error", "fake.pdf"),
    # `info` reads what the file holds (content first, then the name): a PNG named .pdf is reported as an image
    "png-as-pdf-info": Case(["info", "fake.pdf"], "answer", check=lambda out: _reported_as_image(out)),
    # extreme aspect ratios
    "wide-video-text": Case(["ask", "--video", "wide.mp4", "-q", QUESTION], "error", "wide.mp4", ("aspect",)),
    "wide-video-vlm": Case(["ask", "--route", "vlm", "--video", "wide.mp4", "-q", QUESTION], "error", "wide.mp4",
                           ("aspect",)),
    "wide-png-text": Case(["ask", "--image", "wide.png", "-q", QUESTION], "error", "wide.png", ("aspect",)),
    "wide-png-vlm": Case(["ask", "--route", "vlm", "--image", "wide.png", "-q", QUESTION], "error", "wide.png",
                         ("aspect",)),
    "wide-page-text": Case(["ask", "--pdf", "wide.pdf", "-q", QUESTION], "error", "wide.pdf"),
    "wide-page-vlm": Case(["ask", "--route", "vlm", "--pdf", "wide.pdf", "-q", QUESTION], "error", "wide.pdf"),
    # decompression bombs and huge but harmless images
    "bomb-png-text": Case(["ask", "--image", "bomb.png", "-q", QUESTION], "error", "bomb.png", ("pixels",)),
    "bomb-png-vlm": Case(["ask", "--route", "vlm", "--image", "bomb.png", "-q", QUESTION], "error", "bomb.png",
                         ("pixels",)),
    "big-png-vlm": Case(["ask", "--route", "vlm", "--image", "big.png", "--image", "big.png", "-q", QUESTION],
                        "answer"),
    "big-png-text": Case(["ask", "--image", "big.png", "-q", QUESTION], "answer"),
    # option values
    "fps-zero": Case(["ask", "--video", "clock.mp4", "--fps", "0", "-q", QUESTION], "error", mentions=("--fps",)),
    "fps-nan": Case(["ask", "--video", "clock.mp4", "--fps", "nan", "-q", QUESTION], "error", mentions=("--fps",)),
    "fps-inf": Case(["ask", "--route", "vlm", "--video", "clock.mp4", "--fps", "inf", "-q", QUESTION], "error",
                    mentions=("--fps",)),
    "kv-budget-abc": Case(["ask", "--route", "vlm", "--pdf", "report.pdf", "--kv-press", "snapkv", "--kv-budget",
                           "abc", "-q", QUESTION], "error", mentions=("--kv-budget",)),
    "max-pages-zero-text": Case(["ask", "--pdf", "report.pdf", "--max-pages", "0", "-q", QUESTION], "error",
                                mentions=("--max-pages",)),
    "max-pages-zero-vlm": Case(["ask", "--route", "vlm", "--pdf", "report.pdf", "--max-pages", "0", "-q",
                                QUESTION], "error", mentions=("--max-pages",)),
    "kv-budget-on-text-route": Case(["ask", "--route", "text", "--pdf", "report.pdf", "--kv-budget", "0.5", "-q",
                                     QUESTION], "error", mentions=("--kv-budget",)),
    "visual-budget-on-text-route": Case(["ask", "--route", "text", "--pdf", "report.pdf", "--max-visual-tokens",
                                         "512", "-q", QUESTION], "error", mentions=("--max-visual-tokens",)),
    # a 120 KB question: refused before anything is prefilled
    "huge-question-text": Case(["ask", "--pdf", "report.pdf", "-q", "why " * 30_000], "error",
                               mentions=("question",)),
    "huge-question-vlm": Case(["ask", "--route", "vlm", "--pdf", "report.pdf", "-q", "why " * 30_000], "error",
                              mentions=("question",)),
    # broken or minimal videos
    "truncated-mp4-text": Case(["ask", "--video", "cut.mp4", "-q", QUESTION], "warn", "cut.mp4"),
    "truncated-mp4-vlm": Case(["ask", "--route", "vlm", "--video", "cut.mp4", "-q", QUESTION], "warn", "cut.mp4"),
    "one-frame-video": Case(["ask", "--route", "vlm", "--video", "one.mp4", "--json", "-q", QUESTION], "answer",
                            check=_one_frame_sampled),
    # OCR of a long scanned PDF stays within the time budget and says what it skipped
    "scanned-2000-pages": Case(["ask", "--pdf", "scanned.pdf", "--json", "-q", "How did revenue change?"],
                               "answer", check=_says_what_ocr_skipped, marks=[pytest.mark.slow]),
}


@pytest.fixture(scope="module")
def workdir(tmp_path_factory) -> Path:
    """A folder holding every input under the short names the cases use."""
    folder = tmp_path_factory.mktemp("bad_inputs")
    write_png_as_pdf(folder / "fake.pdf")
    write_frames(folder / "wide.mp4", [np.full((16, 4000, 3), 25 * i, np.uint8) for i in range(10)])
    write_blank_png(folder / "wide.png", 4000, 16)
    write_wide_pdf(folder / "wide.pdf")
    write_blank_png(folder / "bomb.png", 30000, 30000, bit_depth=1)
    write_blank_png(folder / "big.png", 13000, 13000)
    write_frames(folder / "one.mp4", [np.full((64, 64, 3), 128, np.uint8)])
    for name in ("report.pdf", "clock.mp4"):
        (folder / name).symlink_to(REPO / "samples" / name)
    clip = SHARED_DATA / "media" / "dc_demo.mp4"
    if clip.is_file():
        write_truncated_mp4(clip, folder / "cut.mp4")
    return folder


# The CLI in a fresh process that writes its peak RSS (VmHWM: the high-water mark of its own address space,
# in kB) when it exits. wait4's ru_maxrss is not used: Linux folds the parent's RSS at fork into it.
CLI_WITH_PEAK_RSS = """
import atexit, os, sys
def _peak():
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmHWM:"):
                with open(os.environ["LONGVLM_TEST_PEAK_FILE"], "w") as out:
                    out.write(line.split()[1])
atexit.register(_peak)
from longvlm.cli import main
sys.exit(main(sys.argv[1:]))
"""


def run_cli(argv: list[str], cwd: Path, timeout_s: float = WALL_LIMIT_S + 30) -> tuple[int, str, str, float, float]:
    """(exit code, stdout, stderr, wall seconds, peak RSS MiB) of `longvlm argv` run in `cwd`."""
    peak = cwd / ".peak_kb"
    peak.unlink(missing_ok=True)
    env = dict(os.environ, HF_HUB_OFFLINE="1", PYTHONUNBUFFERED="1", LONGVLM_TEST_PEAK_FILE=str(peak))
    started = time.perf_counter()
    try:
        done = subprocess.run([sys.executable, "-c", CLI_WITH_PEAK_RSS, *argv], cwd=cwd, env=env,
                              capture_output=True, text=True, stdin=subprocess.DEVNULL, timeout=timeout_s)
    except subprocess.TimeoutExpired as exc:
        text = [x.decode(errors="replace") if isinstance(x, bytes) else (x or "") for x in (exc.stdout, exc.stderr)]
        return -9, text[0], text[1], time.perf_counter() - started, float("inf")
    wall = time.perf_counter() - started
    rss = int(peak.read_text()) / 1024 if peak.is_file() else float("inf")
    return done.returncode, done.stdout, done.stderr, wall, rss


@pytest.mark.parametrize("name", [pytest.param(name, marks=case.marks) for name, case in CASES.items()])
def test_bad_input_ends_cleanly_and_bounded(name: str, workdir: Path) -> None:
    case = CASES[name]
    if any(a == "cut.mp4" for a in case.argv) and not (workdir / "cut.mp4").is_file():
        pytest.skip("the shared clip dc_demo.mp4 is not here")
    if name == "scanned-2000-pages" and not (workdir / "scanned.pdf").is_file():
        write_scanned_pdf(workdir / "scanned.pdf", 2000)
    code, stdout, stderr, wall, rss = run_cli(case.argv, workdir)
    ARTIFACTS.mkdir(exist_ok=True)  # one line per run, for bench/RESULTS.md
    with open(ARTIFACTS / "bad_inputs.jsonl", "a") as fh:
        last = (stderr.strip().splitlines() or [""])[-1]
        fh.write(json.dumps({"case": name, "exit": code, "wall_s": round(wall, 1), "peak_rss_mb": round(rss),
                             "last_stderr_line": last[:200]}) + "\n")
    report = f"{name}: exit {code}, {wall:.1f} s, {rss:.0f} MiB\nstdout: {stdout[-2000:]}\nstderr: {stderr[-3000:]}"
    assert "Traceback" not in stderr + stdout, report
    assert wall < WALL_LIMIT_S, report
    assert rss < RSS_LIMIT_MB, report
    lines = [line for line in stderr.splitlines() if line.strip()]
    if case.expect == "error":
        assert code == 2, report
        errors = [line for line in lines if line.startswith("longvlm: error:")]
        assert len(errors) == 1 and lines[-1] == errors[0], report
        message = errors[0]
        if case.names:
            assert f"longvlm: error: {case.names}:" in message, report
        assert str(workdir) not in message and "/tmp" not in message, report
        for word in case.mentions:
            assert word in message.lower(), report
        return
    assert code == 0, report
    assert stdout.strip(), report
    if case.expect == "warn":
        warnings = [line for line in lines if line.startswith("longvlm: warning:")]
        assert warnings and any(case.names in w for w in warnings), report
    if case.check is not None:
        case.check(stdout)
