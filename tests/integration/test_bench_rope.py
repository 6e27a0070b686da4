"""bench/rope_extension.py mechanics on small lengths (the numbers themselves come from running the script)."""

import pytest

from longvlm.vlm.loading import load_vlm
from longvlm.vlm.rope import METHODS, position_extension


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


def test_method_list_is_the_registry(bench):
    """The bench measures every registered method (so a 2L / 4L run covers mrope++code too) after the baseline."""
    assert bench.ALL_METHODS == ["none", *METHODS] and "mrope++code" in bench.ALL_METHODS
    row = bench.prefill_worker("tiny", "mrope++code", 2.0, train_length=128)
    assert row["method"] == "mrope++code" and row["tokens"] == 256 and row["finite"]
    assert "| mrope++code | 2 | 256 |" in bench.prefill_table([dict(row, method="none"), row])


def test_needle_accuracy_mechanics(bench, short_video):
    """Runs every method past the training length and restores the model; the accuracy of random weights
    is meaningless, so only the bookkeeping is checked."""
    vlm = load_vlm("tiny")
    samples = [bench.NeedleSample("At what second does the barcode show 7?", "7", video=short_video,
                                  max_visual_tokens=120)]
    rows = bench.needle_accuracy(vlm, samples, train_length=128, max_new_tokens=2)
    assert [r["method"] for r in rows] == list(METHODS)  # every registered method, mrope++code included
    assert "mrope++code" in METHODS
    for r in rows:
        assert r["samples"] == 1 and r["beyond_train_length"] == 1 and r["max_context"] > 128
        assert r["scale"] == -(-(r["max_context"] + 2) // 128) and 0 <= r["accuracy"] <= 1
    assert position_extension(vlm) is None and vlm.max_context == 8192  # the model is left as it was
    assert "| mrope++ |" in bench.needle_table(rows)
