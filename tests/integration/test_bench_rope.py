"""bench/rope_extension.py mechanics on small lengths (the numbers themselves come from running the script)."""

import pytest

from longvlm.vlm.loading import load_vlm
from longvlm.vlm.rope import position_extension


@pytest.fixture(scope="module")
def bench(load_script):
    return load_script("bench/rope_extension.py")


@pytest.mark.parametrize("preset", ["tiny-qwen2-vl", "tiny-qwen2.5-vl"])
def test_prefill_worker_beyond_train_length(bench, preset):
    row = bench.prefill_worker(preset, "mrope++", 4.0, train_length=128)
    assert row["tokens"] == 512 and row["kv_cache_tokens"] == 512 and row["finite"]
    assert row["train_length"] * 3 < row["max_position"] < row["tokens"]  # positions go well past L
    assert row["seconds"] > 0 and row["peak_mb"] > 0
    table = bench.prefill_table([dict(row, method="none"), row])
    assert "| mrope++ | 4 | 512 |" in table and "| 1.00 |" in table


def test_needle_accuracy_mechanics(bench, short_video):
    """Runs every method past the training length and restores the model; the accuracy of random weights
    is meaningless, so only the bookkeeping is checked."""
    vlm = load_vlm("tiny")
    samples = [bench.NeedleSample("At what second does the barcode show 7?", "7", video=short_video,
                                  max_visual_tokens=120)]
    rows = bench.needle_accuracy(vlm, samples, train_length=128, max_new_tokens=2)
    assert [r["method"] for r in rows] == ["extrapolation", "linear", "ntk", "yarn", "mrope++"]
    for r in rows:
        assert r["samples"] == 1 and r["beyond_train_length"] == 1 and r["max_context"] > 128
        assert r["scale"] == -(-(r["max_context"] + 2) // 128) and 0 <= r["accuracy"] <= 1
    assert position_extension(vlm) is None and vlm.max_context == 8192  # the model is left as it was
    assert "| mrope++ |" in bench.needle_table(rows)
