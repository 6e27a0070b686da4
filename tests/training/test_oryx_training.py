"""Training an Oryx compressor with the VLM frozen (`oryx_compressor:` config section): the loss of one example
goes down with only the compressor learning, a short run saves weights that `build_compressor` loads, and the
section's config checks."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from longvlm.compression import OryxConfig, build_compressor
from longvlm.compression.training import build_oryx, factor_for
from longvlm.datasets import needles
from longvlm.errors import ConfigError
from longvlm.training.collate import example_length
from longvlm.training.config import config_from_dict, config_to_dict, load_config
from longvlm.training.trainer import oryx_example_loss, train
from longvlm.vlm.loading import load_vlm

REPO = Path(__file__).resolve().parents[2]
SMOKE = REPO / "configs" / "oryx_smoke.yaml"
SMALL = REPO / "configs" / "oryx_small.yaml"


def test_compressor_only_training_lowers_the_loss():
    vlm = load_vlm("tiny")
    for p in vlm.model.parameters():
        p.requires_grad_(False)
    torch.manual_seed(0)
    compressor = build_oryx(vlm.config.text_config.hidden_size, OryxConfig(attn_dim=16, gate_init=1.0))
    rng = np.random.default_rng(0)
    examples = [(needles.video_needle(rng, 16), 2), (needles.document_needle(rng, 3, question="code"), 4)]
    optimizer = torch.optim.AdamW(compressor.parameters(), lr=0.1)
    losses = []
    for _ in range(5):
        results = [oryx_example_loss(vlm, vlm.model, compressor, example, k) for example, k in examples]
        loss = torch.stack([loss for loss, _ in results]).mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(float(loss.detach()))
    assert all(b < a for a, b in zip(losses, losses[1:])), losses
    assert all(p.grad is None for p in vlm.model.parameters())  # only the compressor learns
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in compressor.parameters())
    sizes = results[0][1]  # the LLM sees the compressed video: far fewer tokens than the plain example
    assert 0 < sizes["answer_tokens"] < sizes["tokens"] < example_length(examples[0][0], vlm.tokenizer, vlm.config,
                                                                        vlm.vision)


def test_oryx_compressor_config_section(tmp_path):
    config = load_config(SMOKE, {"output_dir": str(tmp_path), "stages": [{"name": "o", "max_length": 512, "steps": 2}]})
    section = config.oryx_compressor
    assert section.compressor == OryxConfig(attn_dim=32, gate_init=1.0) and section.factors == [2, 4]
    result = train(config)
    assert result.steps == 2 and np.isfinite(result.final_loss)
    loaded = build_compressor("oryx", weights=tmp_path / "oryx_compressor")
    vlm = load_vlm("tiny")
    assert loaded.config == OryxConfig(vlm.config.text_config.hidden_size, attn_dim=32, gate_init=1.0)
    torch.manual_seed(config.seed)
    initial = build_oryx(vlm.config.text_config.hidden_size, section.compressor)
    assert any(not torch.equal(initial.state_dict()[k], v) for k, v in loaded.state_dict().items())  # it trained
    log = [json.loads(line) for line in open(tmp_path / "training_log.jsonl") if '"loss"' in line]
    assert log[-1]["tokens"] > 0 and log[-1]["answer_tokens"] > 0 and log[-1]["compressor_trainable"] > 0
    written = json.loads((tmp_path / "train_config.json").read_text())  # the run's record, in the YAML format
    assert written["oryx_compressor"] == {"attn_dim": 32, "gate_init": 1.0, "bias": True, "identity_mode": "x",
                                          "gate": "learned", "factors": [2, 4], "init": None}
    assert config_from_dict(config_to_dict(config)) == config
    again = load_config(SMOKE, {"oryx_compressor": {"init": str(tmp_path / "oryx_compressor")}})
    with torch.random.fork_rng():
        resumed = build_oryx(vlm.config.text_config.hidden_size, again.oryx_compressor.compressor,
                             again.oryx_compressor.init)
    assert all(torch.equal(resumed.state_dict()[k], v) for k, v in loaded.state_dict().items())
    with pytest.raises(ConfigError, match="differ"):
        build_oryx(vlm.config.text_config.hidden_size, OryxConfig(attn_dim=16), tmp_path / "oryx_compressor")


def test_factors_alternate():
    assert [factor_for(i, [2, 4]) for i in range(5)] == [2, 4, 2, 4, 2]


@pytest.mark.parametrize("override,match", [
    ({"oryx_compressor": {"tokens": 8}}, "unknown key"),
    ({"oryx_compressor": {"hidden_size": 64}}, "unknown key"),  # from the trained model
    ({"oryx_compressor": {"factors": [1]}}, r"config.oryx_compressor: factors"),
    ({"oryx_compressor": {"factors": 2}}, r"config.oryx_compressor: factors"),
    ({"oryx_compressor": {"attn_dim": 0}}, r"config.oryx_compressor: \['attn_dim'\]"),
    ({"oryx_compressor": {"identity_mode": "2x"}}, "config.oryx_compressor: identity_mode"),
    ({"memory_bridge": {"num_memory_tokens": 8}}, "cannot be combined"),
    ({"eval_samples": 4}, "eval_samples"),
    ({"data": {"sources": {"text_passkey": 1.0}}}, "text_passkey"),
    ({"trainable": {"freeze": ["llm"]}}, "frozen vision tower"),
])
def test_bad_oryx_sections_are_clear(override, match):
    with pytest.raises(ConfigError, match=match):
        load_config(SMOKE, override)


def test_small_config_trains_the_shipped_model():
    config = load_config(SMALL)
    assert config.model.source == "longvlm/assets/longvlm-small" and config.total_steps == 1000
    section = config.oryx_compressor
    assert section.compressor == OryxConfig(attn_dim=256, bias=True, gate="learned", gate_init=0.0)
    assert section.factors == [2, 4] and "text_passkey" not in config.data.sources
