"""Position extension: frequencies against the formulas, scale 1 == the plain model, config round trip, and
the transformers hook (ROPE_INIT_FUNCTIONS + config validators) really being used."""

import json
import math

import numpy as np
import pytest
import torch
from transformers import Qwen2_5_VLConfig, Qwen2VLConfig
from transformers import modeling_rope_utils as rope_utils
from transformers.models.qwen2_5_vl.modeling_qwen2_5_vl import Qwen2_5_VLRotaryEmbedding
from transformers.models.qwen2_vl.modeling_qwen2_vl import Qwen2VLRotaryEmbedding

from longvlm.cli import main
from longvlm.errors import ConfigError
from longvlm.vlm.loading import load_vlm, tiny_config
from longvlm.vlm.rope import METHODS, apply_position_extension, position_extension

PRESETS = ["tiny-qwen2-vl", "tiny-qwen2.5-vl"]
ROTARY = {"qwen2_vl": Qwen2VLRotaryEmbedding, "qwen2_5_vl": Qwen2_5_VLRotaryEmbedding}


def qwen2_vl_7b_text_config(family="qwen2_vl"):
    """The text config of Qwen2-VL-7B (head_dim 128, mrope_section [16, 24, 24], theta 1e6); no weights."""
    cls = Qwen2VLConfig if family == "qwen2_vl" else Qwen2_5_VLConfig
    return cls(text_config=dict(hidden_size=3584, num_attention_heads=28, num_key_value_heads=4,
                                max_position_embeddings=32768,
                                rope_parameters={"rope_type": "default", "rope_theta": 1e6,
                                                 "mrope_section": [16, 24, 24]})).text_config


def giraffe_code_reference(head_dim, base, max_position_embeddings, max_target_position, mrope_section, scale=1,
                           ntk_factor=1):
    """Independent float64 transcription of GIRAFFE's published M-RoPE++ frequencies: kiaia/GIRAFFE (commit
    ee35955) models/mrope_plus_mokey_patch.py, `Qwen2RotaryEmbeddingMRoPEPP.__init__`: lines 27-29 (base),
    32-34 (linear), 37-42 (NTK base ((max_target_position - 1) / (max_position_embeddings - 1))^(dim/(dim-2))),
    55 (temporal = base), 59-63 (height = (1 - ntk_factor) linear + ntk_factor NTK), 68 (width = NTK)."""
    dim = head_dim
    ntk_base = base * ((max_target_position - 1) / (max_position_embeddings - 1)) ** (dim / (dim - 2))
    t, h, w = mrope_section
    out = []
    for d in range(dim // 2):
        plain, ntk = base ** (-2 * d / dim), ntk_base ** (-2 * d / dim)
        if d < t:
            out.append(plain)
        elif d < t + h:
            out.append(plain / scale * (1 - ntk_factor) + ntk * ntk_factor)
        else:
            out.append(ntk)
    return out


def reference_inv_freq(method, scale, base, head_dim, section, train_length, ntk_factor=1.0):
    """The formulas of the issue / papers, written out per frequency in float64."""
    half = head_dim // 2
    theta = [base ** (-2 * d / head_dim) for d in range(half)]
    if method in ("extrapolation",):
        return theta
    if method == "mrope++code":  # L' = round(s L) is the extended length the config records
        return giraffe_code_reference(head_dim, base, train_length, int(round(scale * train_length)), section, scale,
                                      ntk_factor)
    if method == "linear":
        return [t / scale for t in theta]
    if method == "ntk":
        new_base = base * scale ** (head_dim / (head_dim - 2))
        return [new_base ** (-2 * d / head_dim) for d in range(half)]
    assert method == "mrope++"
    t_end, h_end = section[0], section[0] + section[1]
    extended = scale * train_length
    r = [extended / (2 * math.pi / t) for t in theta]  # r_d = L' / lambda_d
    out = []
    for d, t in enumerate(theta):
        if d < t_end:
            out.append(t)
        elif d >= h_end:
            out.append(t / scale)
        else:
            out.append((1 / scale + (1 - 1 / scale) * (r[d] - r[h_end]) / (r[t_end] - r[h_end])) * t)
    return out


@pytest.fixture(scope="module", params=PRESETS)
def vlm(request):
    return load_vlm(request.param)


def multimodal_inputs(vlm, seed=0):
    """A text + image + video sequence with random pixels (positions exercise all three M-RoPE sections)."""
    gen = torch.Generator().manual_seed(seed)
    c = vlm.config
    ids = [5, 6, c.vision_start_token_id] + [c.image_token_id] * 4 + [c.vision_end_token_id, 7,
                                                                        c.vision_start_token_id]
    ids += [c.video_token_id] * 8 + [c.vision_end_token_id] + list(range(10, 40))
    types = [1 if i == c.image_token_id else 2 if i == c.video_token_id else 0 for i in ids]
    patch = 3 * 2 * 14 * 14
    inputs = {"input_ids": torch.tensor([ids]), "attention_mask": torch.ones(1, len(ids), dtype=torch.long),
              "mm_token_type_ids": torch.tensor([types], dtype=torch.int32),
              "pixel_values": torch.randn(16, patch, generator=gen), "image_grid_thw": torch.tensor([[1, 4, 4]]),
              "pixel_values_videos": torch.randn(32, patch, generator=gen),
              "video_grid_thw": torch.tensor([[2, 4, 4]])}
    if vlm.family == "qwen2_5_vl":
        inputs["second_per_grid_ts"] = torch.tensor([1.5])
    return inputs


@torch.no_grad()
def test_scale_one_equals_unmodified_model(vlm):
    """At s = 1 every method gives the unmodified model's logits (max abs difference <= 1e-6, float32)."""
    inputs = multimodal_inputs(vlm)
    apply_position_extension(vlm, None)
    reference = vlm.model(**inputs).logits
    base_freq = vlm.model.model.language_model.rotary_emb.inv_freq.clone()
    for method in METHODS:
        apply_position_extension(vlm, method, 1.0)
        assert position_extension(vlm).method == method
        torch.testing.assert_close(vlm.model.model.language_model.rotary_emb.inv_freq, base_freq, atol=0, rtol=1e-7)
        torch.testing.assert_close(vlm.model(**inputs).logits, reference, atol=1e-6, rtol=0)
    apply_position_extension(vlm, None)


@torch.no_grad()
def test_scaled_methods_change_the_model(vlm):
    """At s = 4 only plain extrapolation keeps the logits (the new frequencies are really used)."""
    inputs = multimodal_inputs(vlm)
    apply_position_extension(vlm, None)
    reference = vlm.model(**inputs).logits
    for method in METHODS:
        apply_position_extension(vlm, method, 4.0)
        changed = (vlm.model(**inputs).logits - reference).abs().max().item()
        assert (changed == 0) == (method == "extrapolation"), method
    apply_position_extension(vlm, None)
    assert torch.equal(vlm.model(**inputs).logits, reference)


@pytest.mark.parametrize("family", ["qwen2_vl", "qwen2_5_vl"])
@pytest.mark.parametrize("method", ["extrapolation", "linear", "ntk", "mrope++", "mrope++code"])
@pytest.mark.parametrize("scale", [1.0, 2.0, 4.0, 16.0])
def test_frequencies_follow_formulas(family, method, scale):
    """The rotary class of transformers, built from the extended config, holds the reference frequencies
    (Qwen2-VL-7B sizes and a tiny config with mrope_section [2, 3, 3])."""
    for text in (qwen2_vl_7b_text_config(family), tiny_config(family).text_config):
        ext = apply_position_extension(text, method, scale, train_length=16384)
        assert ext.max_length == text.max_position_embeddings == int(16384 * scale)
        rotary = ROTARY[family](config=text)
        section = text.rope_parameters["mrope_section"]
        head_dim = text.hidden_size // text.num_attention_heads
        expected = reference_inv_freq(method, scale, text.rope_parameters["rope_theta"], head_dim, section, 16384)
        np.testing.assert_allclose(rotary.inv_freq.double().numpy(), expected, rtol=2e-6, atol=0)
        assert rotary.attention_scaling == 1.0


def test_random_configs_and_scales_match_reference():
    """Random head sizes, section splits, thetas, fractional scales and training lengths."""
    rng = np.random.default_rng(0)
    for _ in range(25):
        half = int(rng.integers(4, 65))
        t = int(rng.integers(1, half - 1))
        w = int(rng.integers(1, half - t + 1))
        section = [t, half - t - w, w]
        theta = float(10 ** rng.uniform(3, 7))
        scale, length = float(rng.uniform(1, 32)), int(rng.integers(512, 65536))
        text = Qwen2VLConfig(text_config=dict(hidden_size=4 * 2 * half, num_attention_heads=4,
                                              rope_parameters={"rope_type": "default", "rope_theta": theta,
                                                               "mrope_section": section})).text_config
        ntk_factor = float(rng.uniform(0, 1))
        for method in ("ntk", "mrope++", "mrope++code"):
            extra = {"ntk_factor": ntk_factor} if method == "mrope++code" else {}
            apply_position_extension(text, method, scale, train_length=length, **extra)
            expected = reference_inv_freq(method, scale, theta, 2 * half, section, length, **extra)
            np.testing.assert_allclose(Qwen2VLRotaryEmbedding(config=text).inv_freq.double().numpy(), expected,
                                       rtol=5e-6, atol=0)


def test_mrope_pp_sections_on_qwen2_vl_sizes():
    """Section by section on Qwen2-VL-7B: d < 16 unchanged, 16 <= d < 40 a ramp from 1 down towards 1/s,
    d >= 40 divided by s."""
    text = qwen2_vl_7b_text_config()
    base = ROTARY["qwen2_vl"](config=text).inv_freq.clone()
    apply_position_extension(text, "mrope++", 4.0)
    ratio = ROTARY["qwen2_vl"](config=text).inv_freq / base
    assert torch.equal(ratio[:16], torch.ones(16))
    torch.testing.assert_close(ratio[40:], torch.full((24,), 0.25))
    assert ratio[16] == pytest.approx(1.0) and 0.25 < ratio[39] < ratio[17] < 1.0
    assert torch.all(ratio[16:40].diff() < 0)  # strictly decreasing over the height section


GIRAFFE_DEFAULTS = dict(max_position_embeddings=16384, max_target_position=65536, mrope_section=[16, 24, 24])


@pytest.mark.parametrize("theta", [1e4, 1e6])  # GIRAFFE's default base, Qwen2-VL-7B's rope_theta
def test_mrope_pp_code_golden_giraffe_numbers(theta):
    """The finding's numbers: GIRAFFE's code with its defaults (ntk_factor 1, L = 16384 -> L' = 65536, i.e.
    s = 4, mrope_section [16, 24, 24]) on head_dim 128 scales height by 0.703 -> 0.424 and width by 0.415 ->
    0.250 (theta'_d / theta_d = ((L'-1)/(L-1))^(-2d/126), independent of the base); temporal is unchanged."""
    text = qwen2_vl_7b_text_config()
    text.rope_parameters["rope_theta"] = theta
    base = ROTARY["qwen2_vl"](config=text).inv_freq.clone()
    ext = apply_position_extension(text, "mrope++code", 4.0, train_length=16384)
    assert ext.max_length == 65536 and text.rope_parameters["ntk_factor"] == 1.0
    rotary = ROTARY["qwen2_vl"](config=text)
    assert rotary.attention_scaling == 1.0
    ratio = (rotary.inv_freq / base).double().numpy()
    np.testing.assert_allclose(ratio[[16, 39, 40, 63]], [0.703219, 0.423920, 0.414693, 0.249989], rtol=0, atol=2e-6)
    assert np.all(ratio[:16] == 1.0)
    assert np.all(np.diff(ratio[16:]) < 0)  # one NTK curve across height and width
    expected = giraffe_code_reference(128, theta, scale=4.0, **GIRAFFE_DEFAULTS)
    np.testing.assert_allclose(rotary.inv_freq.double().numpy(), expected, rtol=2e-6, atol=0)
    # the paper's M-RoPE++ on the same config differs: height ramps from 1, width is exactly 1/s
    apply_position_extension(text, "mrope++", 4.0, train_length=16384)
    paper = (ROTARY["qwen2_vl"](config=text).inv_freq / base).double().numpy()
    assert paper[16] == pytest.approx(1.0) and np.allclose(paper[40:], 0.25)
    assert abs(paper[16] - ratio[16]) > 0.29 and abs(paper[40] - ratio[40]) > 0.16


@pytest.mark.parametrize("ntk_factor", [0.0, 0.25, 1.0])
def test_mrope_pp_code_ntk_factor(ntk_factor, tmp_path):
    """The code's `ntk_factor` mixes PI (theta/s, f = 0) and NTK (f = 1) over the height section only; it is
    stored in the config and survives save / load."""
    text = qwen2_vl_7b_text_config()
    apply_position_extension(text, "mrope++code", 4.0, train_length=16384, ntk_factor=ntk_factor)
    rotary = ROTARY["qwen2_vl"](config=text)
    expected = giraffe_code_reference(128, 1e6, scale=4.0, ntk_factor=ntk_factor, **GIRAFFE_DEFAULTS)
    np.testing.assert_allclose(rotary.inv_freq.double().numpy(), expected, rtol=2e-6, atol=0)
    if ntk_factor == 0.0:
        plain = [1e6 ** (-2 * d / 128) for d in range(64)]
        np.testing.assert_allclose(rotary.inv_freq[16:40].double().numpy(), np.array(plain[16:40]) / 4, rtol=2e-6)
    config = qwen2_vl_7b_text_config()
    config.rope_parameters = dict(text.rope_parameters)
    config.max_position_embeddings = text.max_position_embeddings
    config.save_pretrained(tmp_path)
    loaded = type(config).from_pretrained(tmp_path)
    assert loaded.rope_parameters["ntk_factor"] == ntk_factor
    torch.testing.assert_close(ROTARY["qwen2_vl"](config=loaded).inv_freq, rotary.inv_freq, atol=0, rtol=0)


def test_mrope_pp_code_bad_options():
    text = qwen2_vl_7b_text_config()
    with pytest.raises(ConfigError, match="ntk_factor only applies to mrope\\+\\+code"):
        apply_position_extension(text, "mrope++", 2.0, ntk_factor=0.5)
    for bad in (1.5, -0.1, True, "1"):
        with pytest.raises(ConfigError, match="ntk_factor must be a number in"):
            apply_position_extension(text, "mrope++code", 2.0, ntk_factor=bad)
    assert text.rope_parameters["rope_type"] == "default"  # rejected: config unchanged
    with pytest.raises(ConfigError, match="original_max_position_embeddings > 1"):
        apply_position_extension(text, "mrope++code", 2.0, train_length=1)
    # GIRAFFE's code accepts empty sections (only the sum is asserted), so the code variant does too
    tiny = tiny_config("qwen2_vl").text_config
    tiny.rope_parameters["mrope_section"] = [0, 4, 4]
    apply_position_extension(tiny, "mrope++code", 4.0, train_length=512)
    expected = giraffe_code_reference(16, 10000.0, 512, 2048, [0, 4, 4], 4.0)
    np.testing.assert_allclose(Qwen2VLRotaryEmbedding(config=tiny).inv_freq.double().numpy(), expected, rtol=2e-6)


def test_pi_and_yarn_are_transformers_functions():
    """'linear' and 'yarn' are transformers' own rope types: the rotary class holds exactly what
    `_compute_linear_scaling_rope_parameters` / `_compute_yarn_parameters` return for the extended config."""
    functions = {"linear": rope_utils._compute_linear_scaling_rope_parameters,
                 "yarn": rope_utils._compute_yarn_parameters}
    for method, function in functions.items():
        assert rope_utils.ROPE_INIT_FUNCTIONS[METHODS[method]] is function
        for family in ROTARY:
            text = qwen2_vl_7b_text_config(family)
            apply_position_extension(text, method, 4.0, train_length=16384)
            inv_freq, attention = function(text)
            rotary = ROTARY[family](config=text)
            assert torch.equal(rotary.inv_freq, inv_freq) and rotary.attention_scaling == attention
    text = qwen2_vl_7b_text_config()
    apply_position_extension(text, "linear", 4.0)
    np.testing.assert_allclose(ROTARY["qwen2_vl"](config=text).inv_freq.double().numpy(),
                               [1e6 ** (-2 * d / 128) / 4 for d in range(64)], rtol=2e-6)


def test_static_ntk_vs_transformers_dynamic_ntk():
    """'ntk' is static: base' = base s^(D/(D-2)) whatever the sequence length. transformers' dynamic NTK
    (`_compute_dynamic_ntk_parameters`, max_position_embeddings = L) recomputes base (s n / L - (s - 1))^(D/(D-2))
    from the current length n > L: the two agree only at n = (2s - 1) L / s and dynamic scales more at n = s L."""
    scale, length = 4.0, 16384
    text = qwen2_vl_7b_text_config()
    apply_position_extension(text, "ntk", scale, train_length=length)
    static = ROTARY["qwen2_vl"](config=text).inv_freq
    dynamic = qwen2_vl_7b_text_config()
    dynamic.rope_parameters = {"rope_type": "dynamic", "rope_theta": 1e6, "factor": scale,
                               "mrope_section": [16, 24, 24]}
    dynamic.max_position_embeddings = length
    at = {n: rope_utils._compute_dynamic_ntk_parameters(dynamic, seq_len=n)[0] for n in (length, 28672, 4 * length)}
    torch.testing.assert_close(at[28672], static, rtol=2e-6, atol=0)  # n = (2s - 1) L / s = 28672
    assert torch.equal(at[length], ROTARY["qwen2_vl"](config=qwen2_vl_7b_text_config()).inv_freq)  # n <= L: none
    assert torch.all(at[4 * length][1:] < static[1:])


def test_yarn_baseline_is_transformers_yarn():
    """YaRN (transformers' own): high frequencies kept, low ones divided by s, temperature 0.1 ln s + 1."""
    text = qwen2_vl_7b_text_config()
    base = ROTARY["qwen2_vl"](config=text).inv_freq.clone()
    apply_position_extension(text, "yarn", 4.0)
    params = text.rope_parameters
    assert params["rope_type"] == "yarn" and params["original_max_position_embeddings"] == 32768
    rotary = ROTARY["qwen2_vl"](config=text)
    ratio = rotary.inv_freq / base
    rotations = 32768 * base / (2 * math.pi)  # r = L / lambda over the training length
    assert torch.allclose(ratio[rotations > 32], torch.ones(1))
    assert torch.allclose(ratio[rotations < 1], torch.tensor(0.25))
    assert torch.all((ratio >= 0.25 - 1e-6) & (ratio <= 1 + 1e-6))
    assert rotary.attention_scaling == pytest.approx(0.1 * math.log(4) + 1)


@pytest.mark.parametrize("preset", PRESETS)
@pytest.mark.parametrize("method", list(METHODS))
@torch.no_grad()
def test_save_and_load_round_trip(tmp_path, preset, method):
    vlm = load_vlm(preset)
    apply_position_extension(vlm, method, 4.0, train_length=2048)
    inputs = multimodal_inputs(vlm)
    expected = vlm.model(**inputs).logits
    vlm.save_pretrained(tmp_path / "m")
    stored = json.loads((tmp_path / "m" / "config.json").read_text())["text_config"]
    assert stored["max_position_embeddings"] == 8192 and stored["rope_parameters"]["factor"] == 4.0
    loaded = load_vlm(tmp_path / "m")
    assert position_extension(loaded) == position_extension(vlm)
    assert position_extension(loaded).train_length == 2048 and loaded.max_context == 8192
    torch.testing.assert_close(loaded.model.model.language_model.rotary_emb.inv_freq,
                               vlm.model.model.language_model.rotary_emb.inv_freq, atol=0, rtol=0)
    torch.testing.assert_close(loaded.model(**inputs).logits, expected, atol=1e-6, rtol=0)


def test_transformers_hooks_are_in_place():
    """Fails loudly if transformers stops reading ROPE_INIT_FUNCTIONS or the `_validate_<type>` methods."""
    for rope_type in ("longvlm_extrapolation", "longvlm_ntk", "longvlm_mrope_pp", "longvlm_mrope_pp_code"):
        assert rope_type in rope_utils.ROPE_INIT_FUNCTIONS
        assert hasattr(rope_utils.RotaryEmbeddingConfigMixin, f"_validate_{rope_type}_rope_parameters")
    text = qwen2_vl_7b_text_config()
    text.rope_parameters = {"rope_type": "longvlm_mrope_pp", "rope_theta": 1e6, "mrope_section": [16, 24, 24],
                            "factor": 0.5}
    with pytest.raises(ConfigError, match="factor must be a number >= 1"):
        text.validate_rope()  # transformers finds our validator by name
    bad = {"rope_type": "longvlm_mrope_pp", "rope_theta": 1e6, "mrope_section": [16, 24, 20], "factor": 2.0}
    with pytest.raises(Exception, match="mrope_section") as info:  # transformers' validator wraps a ValueError
        Qwen2VLConfig(text_config=dict(hidden_size=3584, num_attention_heads=28, rope_parameters=bad))
    assert isinstance(info.value, ConfigError) or isinstance(info.value.__cause__, ConfigError)
    # both rotary classes pick their init function from ROPE_INIT_FUNCTIONS by rope_type
    configs = {family: qwen2_vl_7b_text_config(family) for family in ROTARY}
    for text in configs.values():
        apply_position_extension(text, "ntk", 2.0)
    calls = []
    original = rope_utils.ROPE_INIT_FUNCTIONS["longvlm_ntk"]
    rope_utils.ROPE_INIT_FUNCTIONS["longvlm_ntk"] = lambda config, *a, **k: calls.append(1) or original(config, *a, **k)
    try:
        for family, text in configs.items():
            ROTARY[family](config=text)
    finally:
        rope_utils.ROPE_INIT_FUNCTIONS["longvlm_ntk"] = original
    assert len(calls) == 2


def test_bad_requests_and_restore():
    vlm = load_vlm("tiny")
    with pytest.raises(ConfigError, match="unknown position extension"):
        apply_position_extension(vlm, "rope-magic", 2.0)
    with pytest.raises(ConfigError, match="scale must be a number >= 1"):
        apply_position_extension(vlm, "yarn", 0.5)
    with pytest.raises(ConfigError, match="expected a VLM"):
        apply_position_extension("not a model", "yarn", 2.0)
    assert apply_position_extension(vlm, "pi", 2.0).method == "linear"
    assert vlm.max_context == 16384
    assert apply_position_extension(vlm, "m-rope++", 4.0).train_length == 8192  # L kept when re-applied
    assert vlm.max_context == 32768
    assert apply_position_extension(vlm, "none") is None and vlm.max_context == 8192
    assert vlm.config.text_config.rope_parameters == {"rope_type": "default", "rope_theta": 10000.0,
                                                      "mrope_section": [2, 3, 3]}


def test_cli_rope_options(capsys, short_video):
    assert main(["ask", "--video", short_video, "-q", "when?", "--max-visual-tokens", "128", "--max-new-tokens", "2",
                 "--rope-method", "mrope++", "--rope-scale", "4", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["stats"]["position_extension"] == "mrope++ x4"
    assert main(["ask", "--video", short_video, "-q", "when?", "--rope-method", "bogus", "--rope-scale", "2"]) == 2
    assert "invalid choice: 'bogus'" in capsys.readouterr().err


def test_rejected_extension_leaves_config_unchanged():
    text = tiny_config("qwen2_vl").text_config
    text.rope_parameters["mrope_section"] = [0, 4, 4]  # no temporal section: M-RoPE++ is undefined
    before = dict(text.rope_parameters), text.max_position_embeddings
    with pytest.raises(ConfigError, match="non-empty temporal and width"):
        apply_position_extension(text, "mrope++", 4.0)
    assert (text.rope_parameters, text.max_position_embeddings) == before
