"""Vision pretraining stage: its frame pairs, its config, what it trains, and its place in the trainer."""

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from longvlm.datasets.needles import COLORS, SHAPES, needle_frame_pairs
from longvlm.errors import ConfigError
from longvlm.training.config import VisionPretrainSection, config_from_dict, load_config
from longvlm.training.model_setup import build_training_model
from longvlm.training.trainer import train
from longvlm.training.vision_pretrain import pretrain_vision

SMOKE = Path(__file__).resolve().parents[2] / "configs" / "smoke.yaml"


def test_needle_frame_pairs_label_the_needle_frame():
    pairs = needle_frame_pairs(np.random.default_rng(0), 50)
    assert pairs.frames.shape == (100, 56, 56, 3) and pairs.frames.dtype == np.uint8
    assert set(pairs.shapes) <= set(range(len(SHAPES))) and set(pairs.colors) <= set(range(len(COLORS)))
    assert len(set(pairs.shapes)) > 1 and set(pairs.needle_index) == {0, 1}
    for i in range(50):
        needle = pairs.frames[2 * i + pairs.needle_index[i]].astype(int)
        other = pairs.frames[2 * i + 1 - pairs.needle_index[i]].astype(int)
        color = np.array(list(COLORS.values())[pairs.colors[i]])
        assert (np.abs(needle - color).sum(-1) == 0).sum() > 20  # the shape's pixels have the needle's colour
        assert ((other.max(-1) - other.min(-1)) > 100).sum() == 0  # the haystack frame is desaturated
    again = needle_frame_pairs(np.random.default_rng(0), 50)
    assert np.array_equal(again.frames, pairs.frames)


def test_vision_pretrain_config_is_checked():
    config = config_from_dict({"vision_pretrain": {"steps": 5, "batch_size": 4}})
    assert config.vision_pretrain == VisionPretrainSection(steps=5, batch_size=4)
    assert config_from_dict({}).vision_pretrain is None
    with pytest.raises(ConfigError, match="steps"):
        config_from_dict({"vision_pretrain": {"steps": 0}})
    with pytest.raises(ConfigError, match="lr"):
        config_from_dict({"vision_pretrain": {"lr": -1.0}})
    with pytest.raises(ConfigError, match="unknown key"):
        config_from_dict({"vision_pretrain": {"epochs": 3}})
    with pytest.raises(ConfigError, match="cannot be combined"):
        config_from_dict({"vision_pretrain": {}, "memory_bridge": {},
                          "data": {"sources": {"video_needle/color": 1.0}}})


def test_pretrain_trains_only_the_vision_tower_and_learns(tmp_path):
    torch.manual_seed(0)
    config = load_config(SMOKE, {"output_dir": str(tmp_path)})
    vlm = build_training_model(config)
    before = {name: p.detach().clone() for name, p in vlm.model.named_parameters()}
    records = pretrain_vision(vlm, VisionPretrainSection(steps=60, batch_size=16, lr=3e-3, eval_pairs=100,
                                                         log_every=20), seed=0)
    changed = {name for name, p in vlm.model.named_parameters() if not torch.equal(p, before[name])}
    assert changed and all(".visual." in name or name.startswith("model.visual") for name in changed), changed
    assert any("merger" in name for name in changed)
    losses = [r["vision_loss"] for r in records if "vision_loss" in r]
    assert len(losses) == 3 and losses[-1] < 0.8 * losses[0], losses
    accuracy = records[-1]["vision_eval"]
    assert set(accuracy) == {"shape", "color"} and accuracy["color"] > 0.5  # colour is learned first (chance 1/6)


def test_trainer_logs_pretraining_and_skips_it_on_resume(tmp_path):
    overrides = {"output_dir": str(tmp_path / "run"), "log_every": 1,
                 "stages": [{"name": "s", "max_length": 256, "steps": 2}],
                 "vision_pretrain": {"steps": 3, "batch_size": 4, "eval_pairs": 8, "log_every": 1}}
    config = load_config(SMOKE, overrides)
    train(config, max_steps=1)
    log = tmp_path / "run" / "training_log.jsonl"
    records = [json.loads(line) for line in log.read_text().splitlines()]
    assert [r.get("vision_pretrain_step") for r in records[:4]] == [1, 2, 3, 3] and "vision_eval" in records[3]
    assert records[4]["step"] == 1
    train(config, resume=True)
    records = [json.loads(line) for line in log.read_text().splitlines()]
    assert sum("vision_pretrain_step" in r for r in records) == 4  # not run again
    assert [r["step"] for r in records if "loss" in r and "step" in r] == [1, 2]
