"""Acceptance: `longvlm ask` exactly as shipped (no options: the default route and model) answers the shipped
samples and real PDFs from ../shared/data on both routes.

The text route (the default without --model) must retrieve and cite the page that holds the answer (the
benchmark's evidence page) among its passages; the VLM route (`--route vlm`: the shipped small model, trained
on synthetic tasks only, so its answer text is not checked) must answer within its 512-token context with
its defaults, which it could not before the budget followed the model.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from longvlm.cli import main
from conftest import REPO, SHARED_DATA

DOCUMENTS = SHARED_DATA / "mmlongbench-doc" / "documents"
# (file, question, pages that hold the answer: from MMLongBench-Doc's samples.json; None for the samples)
REAL_PDFS = [
    ("watch_d.pdf", "What will happen when you press and hold the down button?", {3}),
    ("2310.07609v1.pdf", "What is the average performance gap between the ProgramFC performance and our proposed "
                         "system in the HOVER dataset?", {6}),
    # mostly scanned: 11 of its 15 pages have no text layer and are read by OCR
    ("0e94b4197b10096b1f4c699701570fbf.pdf", "Where was Gestalt psychology conceived?", {2}),
]
SAMPLES = [("samples/report.pdf", "What is the secret code of the annual meeting?"),
           ("samples/clock.mp4", "What time does the clock show?")]


def ask_json(capsys, *argv: str) -> dict:
    code = main(["ask", *argv, "--json"])
    out, err = capsys.readouterr()
    assert code == 0, err
    return json.loads(out)


@pytest.mark.parametrize("route", [(), ("--route", "vlm")], ids=["default", "vlm"])
@pytest.mark.parametrize("sample,question", SAMPLES, ids=["report.pdf", "clock.mp4"])
def test_samples_with_the_defaults(capsys, monkeypatch, sample, question, route):
    monkeypatch.chdir(REPO)
    flag = "--pdf" if sample.endswith(".pdf") else "--video"
    record = ask_json(capsys, flag, sample, "-q", question, *route)
    assert record["route"] == ("vlm" if route else "text") and record["evidence"]
    if route:
        assert record["model"] == "small" and record["stats"]["visual_tokens"] > 0
        assert record["stats"]["context_length"] + record["stats"]["new_tokens"] <= 512
    else:
        assert record["answer"].strip() and record["passages"]
    if sample.endswith("report.pdf") and not route:
        assert "p.7" in [p["cite"] for p in record["passages"]]  # the page with the annual meeting's code


@pytest.mark.parametrize("name,question,pages", REAL_PDFS, ids=[n for n, _, _ in REAL_PDFS])
def test_real_pdfs_with_the_defaults(capsys, name, question, pages):
    path = DOCUMENTS / name
    if not path.is_file():
        pytest.skip(f"{path} is not here")
    text = ask_json(capsys, "--pdf", str(path), "-q", question)
    assert text["route"] == "text" and text["answer"].strip()
    cited = {e["index"] for e in text["evidence"] if e["kind"] == "page"}
    assert cited & pages, (cited, pages, text["passages"])
    vlm = ask_json(capsys, "--pdf", str(path), "-q", question, "--route", "vlm")
    assert vlm["route"] == "vlm" and vlm["model"] == "small" and vlm["evidence"]
    assert vlm["stats"]["pages_in_document"] >= 10 and vlm["stats"]["visual_tokens"] > 0


def test_the_installed_command_runs_as_shipped(tmp_path):
    """The console script itself (not `main()` in this process), from another folder, on a shipped sample."""
    done = subprocess.run([sys.executable, "-m", "longvlm.cli", "ask", "--route", "vlm", "--pdf",
                           str(REPO / "samples" / "report.pdf"), "-q", "What is the secret code?"],
                          cwd=tmp_path, capture_output=True, text=True, timeout=300,
                          env=dict(os.environ, HF_HUB_OFFLINE="1"))
    assert done.returncode == 0, done.stderr
    assert "route: vlm" in done.stdout and "evidence: p." in done.stdout
    assert "Loading weights" not in done.stderr  # no progress-bar noise
