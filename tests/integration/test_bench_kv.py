"""bench/kv_compression.py runs end to end on the tiny preset (numbers are not checked here, only structure)."""

import json
import math
import os
import sys

import pytest

from longvlm.datasets import needles

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))), "bench"))
import kv_compression  # noqa: E402

from longvlm.presses import LookMPress  # noqa: E402
from longvlm.vlm.loading import load_vlm  # noqa: E402
from longvlm.pipeline.answer import model_inputs  # noqa: E402


def test_bench_rows(tmp_path, capsys):
    out = tmp_path / "rows.json"
    assert kv_compression.main(["--config", "tiny", "--context", "700", "--repeats", "1", "--new-tokens", "3",
                                "--presses", "lookm,streaming", "--budgets", "1.0", "0.2", "--json", str(out)]) == 0
    rows = json.loads(out.read_text())
    assert [(r["press"], r["budget"]) for r in rows] == [("full cache", 1.0), ("lookm", 1.0), ("lookm", 0.2),
                                                          ("streaming", 1.0), ("streaming", 0.2)]
    full = rows[0]
    for row in rows:
        assert row["kept"] == math.floor(full["kept"] * row["budget"] + 0.5)
        assert row["kv_x"] == pytest.approx(row["kept"] / full["kept"])
        assert row["decode_tps"] > 0 and row["prefill_s"] > 0
    assert "n/a (random weights)" in capsys.readouterr().out


def test_needle_accuracy_runs():
    vlm = load_vlm("tiny")
    samples = kv_compression.synthetic_needle_samples(vlm, per_task=1, tasks=("video_needle/color", "text_passkey"))
    assert len(samples) == 2 and samples[0].answer in needles.COLORS and samples[1].answer.isdigit()
    for sample in samples:  # lengths in the upper half of the training length (+ a few chat-template tokens)
        context = model_inputs(vlm, sample.encoded, sample.question)["input_ids"].shape[1]
        assert vlm.max_context // 2 <= context <= vlm.max_context
    accuracy = kv_compression.needle_accuracy(vlm, samples, LookMPress(0.5), max_new_tokens=2)
    assert 0.0 <= accuracy <= 1.0
