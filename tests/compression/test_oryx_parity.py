"""The Oryx compressor against a transcription of Oryx's `DynamicCompressor` (github Oryx-mllm/Oryx, commit
f8c8bc3, oryx/model/multimodal_resampler/perceiver.py), and the options that reproduce it: bias, attn_dim,
gate, identity_mode; saved compressors keep the behaviour they were saved with."""

from __future__ import annotations

import json
import math

import pytest
import torch
import torch.nn.functional as F

from longvlm.compression import AvgPoolCompressor, OryxCompressor, OryxConfig, build_compressor
from longvlm.compression.oryx import CONFIG_NAME
from longvlm.errors import ConfigError

MODES = {1: "image", 2: "video", 4: "video_long"}


def oryx_dynamic_compressor(image_features, forward_type, image_size, wq, bq, wk, bk):
    """perceiver.py:29-70 `DynamicCompressor.forward`, verbatim but for the weights passed in (`vlm_query_projector`
    -> F.linear(., wq, bq), `vlm_key_projector` -> F.linear(., wk, bk)), `mid_channel` = wq.shape[0] (256 in
    Oryx, :18) and without the EVAL_LARGE device moves. image_features [T, H*W, C] -> ([T, H'*W', C], (H', W'))."""
    mid_channel = wq.shape[0]
    ori_H, ori_W = image_size
    T, N, C = image_features.shape
    image_features = image_features.view(T, ori_H, ori_W, C).permute(0, 3, 1, 2)  # T, C, H, W
    if forward_type == 'video':
        image_features_pool = F.avg_pool2d(image_features, 2, 2)
        image_feature_attn = image_features.reshape(T, C, ori_H // 2, 2, ori_W // 2, 2).permute(0, 2, 4, 3, 5, 1).reshape(T, ori_H // 2 * ori_W // 2, 4, C)  # noqa: E501
        new_image_size = (ori_H // 2, ori_W // 2)
    elif forward_type == 'image' or forward_type == 'text':
        image_features_pool = image_features
        image_feature_attn = image_features.reshape(T, C, ori_H, 1, ori_W, 1).permute(0, 2, 4, 3, 5, 1).reshape(T, ori_H * ori_W, 1, C)  # noqa: E501
        new_image_size = (ori_H, ori_W)
    elif forward_type == 'video_long':
        image_features_pool = F.avg_pool2d(image_features, 4, 4)
        image_feature_attn = image_features.reshape(T, C, ori_H // 4, 4, ori_W // 4, 4).permute(0, 2, 4, 3, 5, 1).reshape(T, ori_H // 4 * ori_W // 4, 16, C)  # noqa: E501
        new_image_size = (ori_H // 4, ori_W // 4)
    else:
        raise NotImplementedError
    image_features_pool = image_features_pool.flatten(2).permute(0, 2, 1)  # T, H*W, C
    new_t, new_p, _ = image_features_pool.shape
    image_query = F.linear(image_features_pool, wq, bq).reshape(new_t * new_p, mid_channel)
    image_key = F.linear(image_feature_attn, wk, bk).reshape(new_t * new_p, -1, mid_channel)
    image_value = image_feature_attn.reshape(new_t * new_p, -1, C)
    image_attn = image_query[:, None] @ (image_key.transpose(-1, -2) / (image_key.shape[-1] ** 0.5))
    image_attn = image_attn.nan_to_num()
    attn_feat = (image_attn.softmax(-1) @ image_value).mean(1).reshape(new_t, new_p, C)
    image_features_pool = image_features_pool + attn_feat
    return image_features_pool, new_image_size


def weights(module):
    q, k = module.query_proj, module.key_proj
    zero = torch.zeros(q.weight.shape[0])
    return q.weight, (q.bias if q.bias is not None else zero), k.weight, (k.bias if k.bias is not None else zero)


def ours(module, grid, k):
    out = module(grid, k)
    return out.reshape(out.shape[0], -1, out.shape[-1])


def theirs(module, grid, k, *params):
    t, h, w, c = grid.shape
    out, size = oryx_dynamic_compressor(grid.reshape(t, h * w, c), MODES[k], (h, w), *(params or weights(module)))
    assert size == (h // k, w // k)
    return out


def reference_module(**options):
    torch.manual_seed(0)
    module = OryxCompressor(OryxConfig(hidden_size=12, **options))
    for p in [*module.query_proj.parameters(), *module.key_proj.parameters()]:
        p.data.normal_(0, 0.5)  # large enough weights that the softmax is far from uniform
    return module


@pytest.mark.parametrize("k", [1, 2, 4])
def test_reference_options_equal_oryx(k):
    """bias=True, attn_dim=256 (the defaults), gate="none" and identity_mode="x+x": Oryx's DynamicCompressor at
    every factor ('image' = 1x: x + x, 'video' = 2x, 'video_long' = 4x)."""
    module = reference_module(gate="none", identity_mode="x+x")
    assert module.config.attn_dim == 256 and module.config.bias
    grid = torch.randn(3, 8, 12, 12, generator=torch.Generator().manual_seed(k))
    with torch.no_grad():
        torch.testing.assert_close(ours(module, grid, k), theirs(module, grid, k), atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("k", [2, 4])
def test_learned_gate_at_one_equals_oryx(k):
    """Our default gate (learned scalar) at g = 1 is Oryx's formula at 2x and 4x; at 1x our default returns x."""
    module = reference_module(gate_init=1.0)
    with torch.no_grad():
        module.gate.fill_(1.0)
    grid = torch.randn(2, 8, 8, 12)
    with torch.no_grad():
        torch.testing.assert_close(ours(module, grid, k), theirs(module, grid, k), atol=1e-5, rtol=1e-5)
        assert torch.equal(module(grid, 1), grid)  # identity_mode "x" (default)
        torch.testing.assert_close(theirs(module, grid, 1), 2 * grid.reshape(2, 64, 12))  # Oryx 1x: x + x


def test_query_bias_matters_and_key_bias_cancels():
    """bk adds <Wq q + bq, bk> to every logit of a region: the softmax cancels it. bq scores keys by bq . Wk f_i:
    without it the output changes (the issue measured 0.147 at 2x on its weights); bias=False is Oryx with both
    biases zero."""
    module = reference_module(gate="none")
    wq, bq, wk, bk = weights(module)
    grid = torch.randn(2, 8, 8, 12)
    with torch.no_grad():
        reference = theirs(module, grid, 2)
        torch.testing.assert_close(theirs(module, grid, 2, wq, bq, wk, torch.zeros_like(bk)), reference,
                                   atol=1e-5, rtol=1e-5)
        assert (theirs(module, grid, 2, wq, torch.zeros_like(bq), wk, bk) - reference).abs().max() > 1e-2
        unbiased = OryxCompressor(OryxConfig(hidden_size=12, bias=False, gate="none"))
        unbiased.query_proj.weight.copy_(wq)
        unbiased.key_proj.weight.copy_(wk)
        zeros = torch.zeros_like(bq)
        torch.testing.assert_close(ours(unbiased, grid, 2), theirs(unbiased, grid, 2, wq, zeros, wk, zeros),
                                   atol=1e-5, rtol=1e-5)


def test_formula_identity_mode_is_x_plus_gx():
    module = reference_module(gate_init=0.25, identity_mode="x+x")
    grid = torch.randn(1, 4, 4, 12)
    with torch.no_grad():
        torch.testing.assert_close(module(grid, 1), 1.25 * grid)
    untrained = OryxCompressor(OryxConfig(hidden_size=12))  # defaults: gate starts at 0 = average pooling
    torch.testing.assert_close(untrained(grid, 2), AvgPoolCompressor()(grid, 2))


def test_compressors_saved_before_the_options_load_as_saved(tmp_path):
    """A config saved before bias / identity_mode / gate existed (no biases, 1x identity, learned gate) loads
    with that behaviour, not today's defaults; new saves record every option."""
    torch.manual_seed(1)
    old = OryxCompressor(OryxConfig(hidden_size=8, attn_dim=4, gate_init=0.5, bias=False))
    old.save_pretrained(tmp_path)
    (tmp_path / CONFIG_NAME).write_text(json.dumps({"hidden_size": 8, "attn_dim": 4, "gate_init": 0.5}))
    loaded = build_compressor("oryx", weights=tmp_path)
    assert (loaded.config.bias, loaded.config.identity_mode, loaded.config.gate) == (False, "x", "learned")
    grid = torch.randn(2, 4, 4, 8)
    with torch.no_grad():
        torch.testing.assert_close(loaded(grid, 2), old(grid, 2))
    OryxCompressor(OryxConfig(hidden_size=8)).save_pretrained(tmp_path / "new")
    saved = json.loads((tmp_path / "new" / CONFIG_NAME).read_text())
    assert saved == {"hidden_size": 8, "attn_dim": 256, "gate_init": 0.0, "bias": True, "identity_mode": "x",
                     "gate": "learned"}


def test_bad_oryx_configs():
    for bad in ({"attn_dim": 0}, {"bias": "yes"}, {"identity_mode": "2x"}, {"gate": "fixed"}, {"gate_init": True}):
        with pytest.raises(ConfigError, match="OryxConfig"):
            OryxConfig(hidden_size=8, **bad)
    with pytest.raises(ConfigError, match="hidden_size"):
        OryxCompressor(OryxConfig())
    assert math.isclose(OryxConfig().gate_init, 0.0)
