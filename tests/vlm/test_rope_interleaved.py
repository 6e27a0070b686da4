"""Position extension on the interleaved M-RoPE families (Qwen3-VL, Qwen3.5 with partial rotary 0.25): the
frequencies the rotary module holds against per-index references, its cos/sin against a reference
recomposition, layout detection, and save / load."""

import math

import numpy as np
import pytest
import torch
from transformers import (PretrainedConfig, Qwen2VLConfig, Qwen3_5Config, Qwen3_5ForConditionalGeneration,
                          Qwen3VLConfig, Qwen3VLForConditionalGeneration)
from transformers import modeling_rope_utils as rope_utils
from transformers.models.qwen3_5.modeling_qwen3_5 import Qwen3_5TextRotaryEmbedding
from transformers.models.qwen3_vl.modeling_qwen3_vl import Qwen3VLTextRotaryEmbedding

import longvlm.vlm  # noqa: F401  (registers the longvlm rope types before any from_pretrained)
from longvlm.errors import ConfigError
from longvlm.vlm.loading import load_vlm
from longvlm.vlm.rope import METHODS, apply_position_extension, mrope_axes, position_extension

FAMILIES = ["qwen3_vl", "qwen3_5"]
ROTARY = {"qwen3_vl": Qwen3VLTextRotaryEmbedding, "qwen3_5": Qwen3_5TextRotaryEmbedding}
VISION = dict(depth=1, hidden_size=32, intermediate_size=64, num_heads=2, out_hidden_size=64, patch_size=16,
              num_position_embeddings=64)
TRAIN_LENGTH = 1024


def tiny_model_config(family, rope=None):
    """A tiny config of the real classes. Qwen3-VL: head_dim 16, all of it rotary, mrope_section [2, 3, 3].
    Qwen3.5: linear + full attention layers, head_dim 256 with partial_rotary_factor 0.25 (64 rotary dims, 32
    frequencies) and the released mrope_section [11, 11, 10]."""
    text = dict(vocab_size=300, hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
                num_key_value_heads=2, max_position_embeddings=4096)
    if family == "qwen3_vl":
        text.update(head_dim=16, rope_parameters=rope or {"rope_type": "default", "rope_theta": 10000.0,
                                                          "mrope_section": [2, 3, 3], "mrope_interleaved": True})
        return Qwen3VLConfig(text_config=text, vision_config=dict(VISION, deepstack_visual_indexes=[0]))
    text.update(head_dim=256, layer_types=["linear_attention", "full_attention"], linear_num_key_heads=2,
                linear_num_value_heads=2, linear_key_head_dim=16, linear_value_head_dim=16, linear_conv_kernel_dim=4,
                rope_parameters=rope or {"rope_type": "default", "rope_theta": 1e7, "partial_rotary_factor": 0.25,
                                         "mrope_section": [11, 11, 10], "mrope_interleaved": True})
    return Qwen3_5Config(text_config=text, vision_config=VISION)


def released_text_config(family, with_section=True):
    """Text config at the released sizes (Qwen3-VL-8B: head_dim 128, theta 5e6, [24, 20, 20]; Qwen3.5: head_dim
    256, partial 0.25, theta 1e7, [11, 11, 10]); without a section the rotary class's default applies."""
    if family == "qwen3_vl":
        rope = {"rope_type": "default", "rope_theta": 5e6, "mrope_section": [24, 20, 20], "mrope_interleaved": True}
        cls, text = Qwen3VLConfig, dict(hidden_size=4096, num_attention_heads=32, head_dim=128)
    else:
        rope = {"rope_type": "default", "rope_theta": 1e7, "partial_rotary_factor": 0.25,
                "mrope_section": [11, 11, 10], "mrope_interleaved": True}
        cls, text = Qwen3_5Config, dict(hidden_size=4096, num_attention_heads=16, head_dim=256)
    if not with_section:  # as transformers' own configs: no mrope_section, no mrope_interleaved
        rope = {k: v for k, v in rope.items() if k not in ("mrope_section", "mrope_interleaved")}
    return cls(text_config=dict(text, max_position_embeddings=32768, rope_parameters=rope)).text_config


def interleaved_axis(d, section):
    """Qwen3-VL's recomposition_frequencies: H at slice(1, 3 h, 3), W at slice(2, 3 w, 3), T elsewhere."""
    if d % 3 == 1 and d < 3 * section[1]:
        return "h"
    if d % 3 == 2 and d < 3 * section[2]:
        return "w"
    return "t"


def reference_inv_freq(method, scale, base, dim, section, train_length, ntk_factor=1.0):
    """Per frequency index in float64, D = dim the rotary dimension, axis by the interleaved rule."""
    half = dim // 2
    theta = [base ** (-2 * d / dim) for d in range(half + 1)]  # one past the end for the height ramp's e
    axes = [interleaved_axis(d, section) for d in range(half)]
    if method == "extrapolation":
        return theta[:half]
    if method == "linear":
        return [t / scale for t in theta[:half]]
    if method == "ntk":
        return [(base * scale ** (dim / (dim - 2))) ** (-2 * d / dim) for d in range(half)]
    if method == "yarn":  # transformers' YaRN (beta_fast 32, beta_slow 1, truncated correction range) over D
        def correction(rotations):
            return dim * math.log(train_length / (rotations * 2 * math.pi)) / (2 * math.log(base))
        low, high = max(math.floor(correction(32)), 0), min(math.ceil(correction(1)), dim - 1)
        ramp = [min(max((d - low) / (high - low), 0.0), 1.0) for d in range(half)]
        return [t / scale * r + t * (1 - r) for t, r in zip(theta, ramp)]
    if method == "mrope++code":
        ntk_base = base * ((round(scale * train_length) - 1) / (train_length - 1)) ** (dim / (dim - 2))
        ntk = [ntk_base ** (-2 * d / dim) for d in range(half)]
        return [theta[d] if a == "t" else theta[d] / scale * (1 - ntk_factor) + ntk[d] * ntk_factor if a == "h"
                else ntk[d] for d, a in enumerate(axes)]
    assert method == "mrope++"
    height = [d for d, a in enumerate(axes) if a == "h"]
    b, e = height[0], height[-1] + 1
    r = [scale * train_length * t / (2 * math.pi) for t in theta]  # r_d = L' / lambda_d
    return [theta[d] if a == "t" else theta[d] / scale if a == "w"
            else (1 / scale + (1 - 1 / scale) * (r[d] - r[e]) / (r[b] - r[e])) * theta[d]
            for d, a in enumerate(axes)]


def rotary_of(model):
    return model.model.language_model.rotary_emb


@pytest.fixture(scope="module", params=FAMILIES)
def model(request):
    cls = Qwen3VLForConditionalGeneration if request.param == "qwen3_vl" else Qwen3_5ForConditionalGeneration
    with torch.random.fork_rng():
        torch.manual_seed(0)
        return cls(tiny_model_config(request.param)).eval()


def family_of(model):
    return "qwen3_vl" if isinstance(model, Qwen3VLForConditionalGeneration) else "qwen3_5"


def test_axes_follow_the_interleaved_rule():
    """The one axis map: Qwen3-VL / Qwen3.5 interleaved (also without mrope_interleaved in the config, as
    transformers' own configs are), Qwen2-VL contiguous (its class ignores the flag); other model types by
    the flag."""
    names = "thw"
    for family in FAMILIES:
        for with_section in (True, False):
            text = released_text_config(family, with_section)
            section = [24, 20, 20] if family == "qwen3_vl" else [11, 11, 10]
            half = 64 if family == "qwen3_vl" else 32
            assert [names[a] for a in mrope_axes(text)] == [interleaved_axis(d, section) for d in range(half)]
    qwen35 = [names[a] for a in mrope_axes(released_text_config("qwen3_5"))]
    assert qwen35.count("t") == 11 and qwen35.count("h") == 11 and qwen35.count("w") == 10 and qwen35[-1] == "h"
    assert [names[a] for a in mrope_axes(tiny_model_config("qwen3_vl").text_config)] == list("thwthwth")
    qwen2 = Qwen2VLConfig(text_config=dict(hidden_size=64, num_attention_heads=4, rope_parameters={
        "rope_type": "default", "rope_theta": 1e4, "mrope_section": [2, 3, 3], "mrope_interleaved": True})).text_config
    assert [names[a] for a in mrope_axes(qwen2)] == list("tthhhwww")
    other = PretrainedConfig(hidden_size=64, num_attention_heads=4,
                             rope_parameters={"rope_theta": 1e4, "mrope_section": [2, 3, 3]})
    assert [names[a] for a in mrope_axes(other)] == list("tthhhwww")
    other.rope_parameters["mrope_interleaved"] = True
    assert [names[a] for a in mrope_axes(other)] == list("thwthwth")


@pytest.mark.parametrize("method", list(METHODS))
@pytest.mark.parametrize("scale", [1.0, 4.0, 16.0])
def test_model_frequencies_follow_formulas(model, method, scale):
    """After apply_position_extension on the model, its rotary module holds D/2 frequencies equal to the
    per-index reference (attention scaling 1, YaRN's 0.1 ln s + 1)."""
    family = family_of(model)
    apply_position_extension(model, method, scale, train_length=TRAIN_LENGTH)
    rotary = rotary_of(model)
    assert type(rotary) is ROTARY[family]
    text = model.config.text_config
    assert position_extension(model).method == method and text.max_position_embeddings == int(TRAIN_LENGTH * scale)
    params = text.rope_parameters
    dim = 16 if family == "qwen3_vl" else 64  # Qwen3.5: int(256 * 0.25)
    expected = reference_inv_freq(method, scale, params["rope_theta"], dim, params["mrope_section"], TRAIN_LENGTH)
    assert rotary.inv_freq.shape == (dim // 2,)
    np.testing.assert_allclose(rotary.inv_freq.double().numpy(), expected, rtol=2e-6, atol=0)
    yarn = 0.1 * math.log(scale) + 1 if scale > 1 else 1.0
    assert rotary.attention_scaling == pytest.approx(yarn if method == "yarn" else 1.0)
    if method == "mrope++code":  # the ntk_factor mix over height
        apply_position_extension(model, method, scale, train_length=TRAIN_LENGTH, ntk_factor=0.3)
        expected = reference_inv_freq(method, scale, params["rope_theta"], dim, params["mrope_section"],
                                      TRAIN_LENGTH, ntk_factor=0.3)
        np.testing.assert_allclose(rotary_of(model).inv_freq.double().numpy(), expected, rtol=2e-6, atol=0)
    apply_position_extension(model, None)
    assert rotary_of(model).rope_type == "default"


@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize("with_section", [True, False])
@pytest.mark.parametrize("method", list(METHODS))
def test_released_sizes_follow_formulas(family, with_section, method):
    """The rotary class built from a released-size text config (with the checkpoint's mrope keys, or with
    none as transformers' defaults) holds the reference frequencies; yarn equals transformers' function."""
    text = released_text_config(family, with_section)
    apply_position_extension(text, method, 4.0, train_length=16384)
    rotary = ROTARY[family](config=text)
    dim, section = (128, [24, 20, 20]) if family == "qwen3_vl" else (64, [11, 11, 10])
    expected = reference_inv_freq(method, 4.0, text.rope_parameters["rope_theta"], dim, section, 16384)
    np.testing.assert_allclose(rotary.inv_freq.double().numpy(), expected, rtol=2e-6, atol=0)
    if method == "yarn":
        assert torch.equal(rotary.inv_freq, rope_utils._compute_yarn_parameters(text)[0])


@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize("scale", [2.0, 4.0, 16.0])
def test_mrope_pp_groups(family, scale):
    """M-RoPE++ interleaved: the temporal indices unchanged, the width ones divided by s, the height ones
    from 1 at the first (the ramp's top, as d = t_end contiguous) strictly decreasing, the rest strictly
    between 1/s and 1; no other index is left unchanged."""
    text = released_text_config(family)
    base = ROTARY[family](config=text).inv_freq.clone()
    apply_position_extension(text, "mrope++", scale)
    ratio = ROTARY[family](config=text).inv_freq.double() / base.double()
    axes = torch.tensor(mrope_axes(text))
    temporal, height, width = ratio[axes == 0], ratio[axes == 1], ratio[axes == 2]
    assert torch.all(temporal == 1.0)
    torch.testing.assert_close(width, torch.full_like(width, 1 / scale), rtol=1e-6, atol=0)
    assert height[0] == pytest.approx(1.0) and torch.all(height.diff() < 0)
    assert torch.all((height[1:] > 1 / scale) & (height[1:] < 1))
    first_height = int(torch.nonzero(axes == 1)[0])
    unchanged = set(torch.nonzero(ratio == 1.0).flatten().tolist()) - {first_height}
    assert unchanged == set(torch.nonzero(axes == 0).flatten().tolist())


def reference_cos_sin(inv_freq, position_ids, axes, attention_scaling):
    """cos/sin as the family's recomposition: index d rotates by the position of its axis, halves repeated."""
    per_index = position_ids[axes, :, :].permute(1, 2, 0).float()  # (batch, seq, D/2): position of d's axis
    freqs = per_index * inv_freq.float()
    emb = torch.cat((freqs, freqs), dim=-1)
    return emb.cos() * attention_scaling, emb.sin() * attention_scaling


@pytest.mark.parametrize("method", list(METHODS))
@torch.no_grad()
def test_cos_sin_use_the_interleaved_axes(model, method):
    """For 3D (t, h, w) position ids the rotary module returns the reference cos/sin of its new frequencies
    with the interleaved recomposition (a contiguous reading would differ); past L' nothing is recomputed."""
    apply_position_extension(model, method, 4.0, train_length=TRAIN_LENGTH)
    rotary = rotary_of(model)
    inv_freq = rotary.inv_freq.clone()
    gen = torch.Generator().manual_seed(1)
    position_ids = torch.randint(0, 3 * TRAIN_LENGTH, (3, 2, 7), generator=gen)
    position_ids[:, :, -1] = 8 * TRAIN_LENGTH  # beyond L' = 4 L: no dynamic update for these rope types
    x = torch.zeros(2, 7, 8)
    cos, sin = rotary(x, position_ids)
    section = model.config.text_config.rope_parameters["mrope_section"]
    axes = torch.tensor(["thw".index(interleaved_axis(d, section)) for d in range(len(inv_freq))])
    ref_cos, ref_sin = reference_cos_sin(inv_freq, position_ids, axes, rotary.attention_scaling)
    torch.testing.assert_close(cos, ref_cos, rtol=0, atol=1e-6)
    torch.testing.assert_close(sin, ref_sin, rtol=0, atol=1e-6)
    assert torch.equal(rotary.inv_freq, inv_freq)
    contiguous = torch.repeat_interleave(torch.arange(3), torch.tensor(section))
    assert (cos - reference_cos_sin(inv_freq, position_ids, contiguous, rotary.attention_scaling)[0]).abs().max() > 0.1
    apply_position_extension(model, None)


@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize("method", list(METHODS))
@torch.no_grad()
def test_save_and_load_round_trip(tmp_path, family, method):
    """save_pretrained / from_pretrained (longvlm.vlm imported) keep the extension, its frequencies (rebuilt
    on the meta device and re-initialised by transformers) and the logits."""
    cls = Qwen3VLForConditionalGeneration if family == "qwen3_vl" else Qwen3_5ForConditionalGeneration
    with torch.random.fork_rng():
        torch.manual_seed(0)
        model = cls(tiny_model_config(family)).eval()
    apply_position_extension(model, method, 4.0, train_length=TRAIN_LENGTH)
    ids = torch.tensor([[5, 6, 7, 8, 9, 10, 11]])
    expected = model(input_ids=ids).logits
    model.save_pretrained(tmp_path)
    loaded = cls.from_pretrained(tmp_path).eval()
    assert position_extension(loaded) == position_extension(model)
    params = loaded.config.text_config.rope_parameters
    assert params["mrope_interleaved"] is True and params["mrope_section"] == model.config.text_config.rope_parameters[
        "mrope_section"]
    assert params.get("partial_rotary_factor", 1.0) == (0.25 if family == "qwen3_5" else 1.0)
    torch.testing.assert_close(rotary_of(loaded).inv_freq, rotary_of(model).inv_freq, atol=0, rtol=0)
    assert rotary_of(loaded).attention_scaling == rotary_of(model).attention_scaling
    torch.testing.assert_close(loaded(input_ids=ids).logits, expected, atol=1e-6, rtol=0)


@pytest.mark.parametrize("preset", ["tiny-qwen3-vl", "tiny-qwen3.5"])
@torch.no_grad()
def test_longvlm_presets(preset):
    """The shipped tiny presets of both families: every method applies, s = 1 keeps the logits, s = 4 changes
    them except plain extrapolation."""
    vlm = load_vlm(preset)
    ids = torch.tensor([[5, 6, 7, 8, 9, 10, 11, 12]])
    reference = vlm.model(input_ids=ids).logits
    for method in METHODS:
        apply_position_extension(vlm, method, 1.0)
        torch.testing.assert_close(vlm.model(input_ids=ids).logits, reference, atol=1e-6, rtol=0)
        apply_position_extension(vlm, method, 4.0)
        assert len(rotary_of(vlm.model).inv_freq) == len(mrope_axes(vlm.model.config.text_config))
        changed = (vlm.model(input_ids=ids).logits - reference).abs().max().item()
        assert (changed == 0) == (method == "extrapolation"), method
    apply_position_extension(vlm, None)
    assert torch.equal(vlm.model(input_ids=ids).logits, reference)


def test_interleaved_validation():
    """M-RoPE++ needs temporal and width indices in the layout actually used; the section must sum to D/2."""
    text = tiny_model_config("qwen3_vl").text_config
    text.rope_parameters["mrope_section"] = [5, 3, 0]  # no width index
    with pytest.raises(ConfigError, match="non-empty temporal and width"):
        apply_position_extension(text, "mrope++", 4.0)
    text.rope_parameters["mrope_section"] = [0, 4, 4]  # interleaved: d = 0, 3, 6 are still temporal
    apply_position_extension(text, "mrope++", 4.0, train_length=512)
    expected = reference_inv_freq("mrope++", 4.0, 1e4, 16, [0, 4, 4], 512)
    np.testing.assert_allclose(Qwen3VLTextRotaryEmbedding(config=text).inv_freq.double().numpy(), expected, rtol=2e-6)
    qwen35 = tiny_model_config("qwen3_5").text_config
    qwen35.rope_parameters["mrope_section"] = [24, 20, 20]  # Qwen3-VL's: 64 frequencies, Qwen3.5 rotates 64 dims
    for method in ("mrope++", "mrope++code"):
        with pytest.raises(ConfigError, match="summing to rotary dim/2 = 32"):
            apply_position_extension(qwen35, method, 2.0)
    assert qwen35.rope_parameters["rope_type"] == "default"  # rejected: config unchanged
