"""bench/visual_compression.py on the shipped small model, one held-out sample of one task at k=2 (structure,
not numbers), and its check that the compressed inputs are the ones training builds."""

from __future__ import annotations

import json

import pytest
import torch

from longvlm.training.config import load_config
from longvlm.vlm.loading import load_vlm

TASK = "video_needle/color"


@pytest.fixture(scope="module")
def bench(load_script):
    return load_script("bench/visual_compression.py")


@pytest.fixture(scope="module")
def vlm():
    return load_vlm("small", device="cpu")


def test_table_rows(bench, vlm, tmp_path, capsys):
    config = load_config(bench.os.path.join(bench.REPO, bench.DEFAULT_CONFIG))
    weights = tmp_path / "oryx"  # a "trained" compressor: the untrained one, saved (gate 0: average pooling)
    bench.build_oryx(vlm.config.text_config.hidden_size, config.oryx_compressor.compressor).save_pretrained(weights)
    out = tmp_path / "rows.json"
    assert bench.main(["--per-task", "1", "--tasks", TASK, "--factors", "2", "--oryx-weights", str(weights),
                       "--json", str(out)]) == 0
    table = capsys.readouterr().out
    rows = json.loads(out.read_text())["rows"]
    names = [("none", 1), ("avgpool", 2), ("bilinear", 2), ("oryx untrained", 2), ("oryx trained", 2)]
    assert [(r["compressor"], r["factor"]) for r in rows] == names
    for (name, k), row in zip(names, rows):
        assert f"| {name} | {k} |" in table
        assert row["samples"] == 1 and list(row["per_task"]) == [TASK]
        assert 0.0 <= row["accuracy"] <= 1.0 and 0.0 <= row["per_task"][TASK] <= 1.0
        assert row["checked_against_training"] == (0 if k == 1 else 1)
    reference = rows[0]["visual_tokens_mean"]
    assert all(0 < r["visual_tokens_mean"] < reference / 2 for r in rows[1:])
    # gate 0: both Oryx rows answer like average pooling
    assert rows[3]["records"][0]["response"] == rows[4]["records"][0]["response"] == rows[1]["records"][0]["response"]
    assert "oryx untrained answers like avgpool on 1/1 samples" in table


def test_training_path_check_catches_other_features(bench, vlm):
    config = load_config(bench.os.path.join(bench.REPO, bench.DEFAULT_CONFIG))
    sample = bench.heldout_set(vlm, [TASK], bench.config_bins(config)[:1], 1, seed=1)[0]
    compressors = {name: c for name, c, _ in bench.build_compressors(vlm, config, None)}
    features = bench.tower_features(vlm, sample.example, 2)
    encoded = bench.compressed_input(vlm, features, compressors["avgpool"], 2)
    assert encoded.visual_tokens * 4 == sum(t.shape[0] for t, _ in features.videos)
    bench.check_against_training(vlm, sample, compressors["avgpool"], 2, encoded)
    bench.check_against_training(vlm, sample, compressors["oryx untrained"], 2, encoded)  # gate 0 == avgpool
    opened = compressors["oryx untrained"]
    with torch.no_grad():
        opened.gate.fill_(1.0)
    with pytest.raises(RuntimeError, match="features differ"):
        bench.check_against_training(vlm, sample, opened, 2, encoded)
    with pytest.raises(RuntimeError, match="differ"):  # k=4: other sizes (tiny frames: the same token counts)
        bench.check_against_training(vlm, sample, compressors["avgpool"], 4, encoded)
