"""bench/demo_load.py: its mixed-session checks on hand-made answers (fast), and the whole benchmark with
2 clients for 20 s on small synthetic PDFs and a short synthetic video (slow: it starts the demo server)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from longvlm.testing import page_fact, write_barcode_video, write_text_pdf


def write_docs(folder: Path) -> Path:
    """Two text PDFs with different text and page counts, and a samples.json with their questions."""
    folder.mkdir(parents=True, exist_ok=True)
    write_text_pdf(folder / "alpha.pdf", [f"Alpha report page {p}\n\n{page_fact(p)}" for p in range(1, 4)])
    write_text_pdf(folder / "beta.pdf", [f"Beta manual section {p}\n\nThe beta valve {p} opens at {20 + p} bar."
                                         for p in range(1, 6)])
    samples = [{"doc_id": "alpha.pdf", "question": "What is the secret code of page 2?"},
               {"doc_id": "alpha.pdf", "question": "Which page has the code 1111?"},
               {"doc_id": "beta.pdf", "question": "At what pressure does the beta valve 3 open?"},
               {"doc_id": "beta.pdf", "question": "Which section is about valve 5?"},
               {"doc_id": "beta.pdf", "question": "What is the secret code of page 2?"}]  # shared: dropped
    path = folder / "samples.json"
    path.write_text(json.dumps(samples))
    return path


@pytest.fixture
def bench(load_script):
    return load_script("bench/demo_load.py")


def answer(question: str, page: int, snippet: str, pages: int) -> dict:
    """An /ask output as the demo returns it (text route)."""
    reply = (f"It is 1074.\n\n<details><summary>1 retrieved passages</summary><b>[p.{page}]</b> {snippet}"
             f"</details>\n\n<sub>route: text (no VLM) · model: SmolLM2 · cited: p.{page}</sub>")
    return {"chat": [{"role": "user", "content": question}, {"role": "assistant", "content": reply}],
            "cites": f'<div class="lv-cites"><span class="lv-group">Text indexed from {pages} pages:</span></div>',
            "stats": f'<div class="lv-key">pages / frames indexed</div><div>{pages} (3 with text)</div>'
                     '<div class="lv-key">time per stage</div><div>retrieve 0.50s · generate 1.25s</div>',
            "notice": "", "question": "", "video": None, "page": {"label": f"Page {page}"}}


def test_pick_documents_and_the_mixed_session_checks(bench, tmp_path):
    samples = write_docs(tmp_path / "docs")
    alpha, beta = bench.pick_documents(tmp_path / "docs", samples, 2)
    assert (alpha.name, alpha.page_count, beta.name, beta.page_count) == ("alpha.pdf", 3, "beta.pdf", 5)
    assert alpha.questions == ["Which page has the code 1111?"]  # the question both documents have is dropped
    with pytest.raises(SystemExit, match="only 2 PDFs"):
        bench.pick_documents(tmp_path / "docs", samples, 3)

    shared = bench.Shared("http://127.0.0.1:1/", deadline=0.0, request_timeout_s=1, load_timeout_s=1)
    q = alpha.questions[0]
    good = answer(q, 2, "Alpha report page 2 The secret code of page 2 is 1074.", 3)
    assert bench.check_pdf_answer(alpha, [beta], [q], good, True, shared, "a") == (1, 0)
    assert shared.violations == []
    assert bench.server_seconds(good["stats"]) == {"retrieve_s": 0.5, "generate_s": 1.25, "server_s": 1.75}

    checks = [
        (answer(beta.questions[0], 2, "Alpha report page 2", 3), "another session's question"),
        (answer(q, 2, "Beta manual section 2 The beta valve 2 opens at 22 bar.", 3), "another session's document"),
        (answer(q, 2, "Alpha report page 2", 5), "citations panel is not this document's"),
        (answer(q, 7, "Alpha report page 2", 3), "cites a page its document does not have"),
    ]
    for out, what in checks:
        shared.violations.clear()
        bench.check_pdf_answer(alpha, [beta], [q], out, True, shared, "a")
        assert any(what in v["what"] for v in shared.violations), (what, shared.violations)
    shared.violations.clear()
    bench.check_pdf_answer(alpha, [beta], [q, q], good, True, shared, "a")  # a turn went missing
    assert [v["what"] for v in shared.violations] == ["chat is not this session's conversation"]
    shared.violations.clear()
    assert bench.check_pdf_answer(alpha, [beta], [q], answer(q, 2, "text in no document", 3), True, shared,
                                  "a") == (1, 1)  # counted as unverified, not as a violation
    assert shared.violations == []

    assert bench.percentile([1.0, 2.0, 3.0, 4.0], 0.5) == 2.5 and bench.percentile([], 0.5) is None
    video = {"load_start_s": 10.0, "ready_s": 40.0}
    records = [{"submit_s": 0, "latency_s": 8, "server_s": 3},  # worked on 5-8 s: before the load
               {"submit_s": 0, "latency_s": 15, "server_s": 3},  # 12-15 s: during
               {"submit_s": 0, "latency_s": 45, "server_s": 10},  # 35-45 s: during (overlaps the end)
               {"submit_s": 30, "latency_s": 20, "server_s": 5}]  # 45-50 s: after
    assert [bench.phase_of(r, video) for r in records] == ["before", "during", "during", "after"]
    assert bench.answering_during_load(records, video) == {"load_window_s": 30.0, "answer_work_s": 8.0,
                                                           "share": 0.267, "answers_finished": 1,
                                                           "answers_inside": 1, "answers_spanning": 0}
    spanning = [{"submit_s": 0, "latency_s": 45, "server_s": 40}]  # worked on 5-45 s: the whole load
    assert bench.answering_during_load(spanning, video)["answers_spanning"] == 1


def test_the_report_is_rewritten_from_a_stored_result(bench, tmp_path):
    machine = {"cores": 2, "cpu": "test", "load_avg_start": [0.1, 0.1, 0.1], "load_avg_end": [2.0, 1.0, 0.5],
               "load1_during_run": {"mean": 1.5, "max": 2.0}, "other_busy_processes_start": [],
               "other_busy_processes_end": [], "busy": False}
    answers = [{"client": "pdf0", "submit_s": 0, "latency_s": 4, "server_s": 2},
               {"client": "pdf1", "submit_s": 0, "latency_s": 14, "server_s": 3},  # 11-14 s: inside the load
               {"client": "pdf0", "submit_s": 4, "latency_s": 40, "server_s": 2}]
    stored = {"date": "now", "commit": "abc", "clients": 2, "duration_s": 44.0, "requested_seconds": 30,
              "documents": [{"name": "a.pdf", "pages": 3}, {"name": "b.pdf", "pages": 5}],
              "video": {"load_start_s": 10, "ready_s": 30, "time_to_ready_s": 20, "ready": True, "source": "v",
                        "width": 64, "height": 64, "size_mb": 1},
              "errors": [], "violations": [], "passages_checked": 6, "unverified_passages": 0,
              "peak_server_rss_mib": 900.0, "machine": machine, "answers": answers}
    (tmp_path / "demo_load.json").write_text(json.dumps(stored))
    assert bench.main(["--report-only", "--out-dir", str(tmp_path)]) == 0
    result = json.loads((tmp_path / "demo_load.json").read_text())
    assert [a["phase"] for a in result["answers"]] == ["before", "during", "after"]
    assert result["latency"]["answers"] == 3 and result["latency"]["p50_s"] == 14
    assert result["answering_during_load"]["answers_inside"] == 1
    report = (tmp_path / "demo_load.md").read_text()
    assert "| 2 PDF + 1 video | 30 s asking (+14 s to finish) | 3 | 0 | 0 | 14.00 s |" in report
    assert "Loads do not block answers: 1 answer was started and finished" in report
    assert "busy machine" not in report
    stored["errors"] = [{"client": "pdf0", "what": "ask", "message": "boom"}]
    (tmp_path / "demo_load.json").write_text(json.dumps(stored))
    assert bench.main(["--report-only", "--out-dir", str(tmp_path)]) == 1  # errors fail the run


@pytest.mark.slow
def test_the_benchmark_runs_with_two_clients(bench, tmp_path):
    """~60 s on 2 cores: the demo server starts, 2 clients ask for 20 s, a 40-s video loads meanwhile."""
    samples = write_docs(tmp_path / "docs")
    video = write_barcode_video(tmp_path / "clip.mp4", 40, fps=5, height=96, width=128)
    out = tmp_path / "results"
    rc = bench.main(["--clients", "2", "--seconds", "20", "--documents", str(tmp_path / "docs"), "--samples",
                     str(samples), "--video", video, "--video-delay", "2", "--warmup", "0", "--out-dir", str(out),
                     "--deadline-slack", "240", "--request-timeout", "120", "--load-timeout", "180"])
    result = json.loads((out / "demo_load.json").read_text())
    assert rc == 0, (result["errors"], result["violations"], result.get("server_log_tail"))
    assert result["errors"] == [] and result["violations"] == []
    assert result["latency"]["answers"] >= 2 and {a["client"] for a in result["answers"]} == {"pdf0", "pdf1"}
    assert result["passages_checked"] > 0 and result["unverified_passages"] == 0
    assert result["video"]["ready"] and result["video"]["time_to_ready_s"] > 0
    assert result["video"]["answer_latency_s"] > 0
    assert result["peak_server_rss_mib"] > 100 and result["machine"]["cores"] >= 1
    assert len(result["machine"]["load_avg_start"]) == 3
    table = (out / "demo_load.md").read_text()
    assert "| clients | duration | answers |" in table and "What this shows" in table
    import psutil

    assert not psutil.pid_exists(result["server_pid"]) or \
        psutil.Process(result["server_pid"]).status() == psutil.STATUS_ZOMBIE  # the server was stopped
    assert not Path(result["work_dir"]).exists()  # the temporary folder (video, uploads, caches) is gone
