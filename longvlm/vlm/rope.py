"""Context extension for the multimodal RoPE (M-RoPE) of Qwen2-VL / Qwen2.5-VL / Qwen3-VL / Qwen3.5.

Methods, selected by name and scale s = L'/L (L: the length the model was trained for, L' the extended one):

| name            | frequencies theta'_d                                                | `rope_type`             |
| --------------- | ------------------------------------------------------------------- | ----------------------- |
| `extrapolation` | theta_d (the unmodified model run past L)                           | `longvlm_extrapolation` |
| `linear`        | theta_d / s (position interpolation, PI)                            | `linear` (transformers) |
| `ntk`           | base' = base * s^(D/(D-2)), D = rotary dim (NTK-aware, static)      | `longvlm_ntk`           |
| `yarn`          | transformers' YaRN: ramp by wavelength, attention temperature       | `yarn` (transformers)   |
|                 | 0.1 ln s + 1                                                        |                         |
| `mrope++`       | M-RoPE++ (GIRAFFE, arXiv 2412.12735 §3.2): temporal section         | `longvlm_mrope_pp`      |
|                 | extrapolated, height section on a YaRN-style ramp, width section    |                         |
|                 | interpolated; no attention temperature                              |                         |
| `mrope++code`   | M-RoPE++ as GIRAFFE's published code computes it                    | `longvlm_mrope_pp_code` |
|                 | (kiaia/GIRAFFE models/mrope_plus_mokey_patch.py:27-71): temporal    |                         |
|                 | theta_d, height (1-f) theta_d/s + f theta_d^NTK, width theta_d^NTK, |                         |
|                 | NTK base' = base ((L'-1)/(L-1))^(D/(D-2)), f = `ntk_factor` (1)     |                         |

D is the rotary dimension, int(head_dim * partial_rotary_factor) as transformers computes it (head_dim except
Qwen3.5, whose factor 0.25 rotates a quarter of each head), so there are D/2 frequencies theta_d = base^(-2d/D).
M-RoPE gives each frequency index d one axis of the (temporal, height, width) position (`mrope_axes`) from
`mrope_section = [t, h, w]` (summing to D/2), in one of two layouts, as each family's rotary class recomposes
its cos/sin (`recomposition_frequencies`):

- contiguous (Qwen2-VL, Qwen2.5-VL; default [16, 24, 24]): d < t_end = t temporal (highest frequencies),
  t_end <= d < h_end = t + h height, d >= h_end width (lowest frequencies);
- interleaved (Qwen3-VL, default [24, 20, 20]; Qwen3.5, default [11, 11, 10]): height if d % 3 == 1 and
  d < 3h, width if d % 3 == 2 and d < 3w, temporal otherwise, so every axis spans the whole spectrum.

The layout follows the rotary class transformers builds for the config's model_type; `mrope_interleaved` in
`rope_parameters` (which Qwen3 checkpoints carry, transformers' own Qwen3 configs don't) decides only for model
types not listed in `MROPE_FAMILIES`. With r_d = L' / lambda_d and lambda_d = 2 pi / theta_d, M-RoPE++ sets
theta'_d = theta_d for temporal d, theta'_d = theta_d / s for width d, and for height d a ramp by wavelength
over the height group's frequency band, from its highest-frequency index b (factor 1) to the index e just past
its lowest-frequency one (factor 1/s):
theta'_d = [1/s + (1 - 1/s) (r_d - r_e) / (r_b - r_e)] theta_d.
Contiguous: b = t_end, e = h_end, the paper's formula (the height band lies between the temporal and width
ones). Interleaved ("interleaved height ramp", longvlm's generalisation, the paper has only the contiguous
layout): b = 1, e = 3h - 1, one past the last height index (Qwen3-VL [24, 20, 20]: e = 59, a width index); when
e = D/2 (Qwen3.5 [11, 11, 10]: the last frequency, d = 31, is height) r_e = r_{e-1}^2 / r_{e-2}, i.e.
L' theta_e / 2 pi for the next frequency theta_e = base^(-2e/D). Height factors fall from 1 at b towards 1/s.

GIRAFFE's published code does something else for height and width (NTK, not a ramp and 1/s): with its
defaults (f = 1, L = 16384, L' = 65536, D = 128) theta'_d / theta_d = ((L'-1)/(L-1))^(-2d/(D-2)), i.e. 0.703 ->
0.424 over the height section and 0.415 -> 0.250 over the width section. `mrope++code` reproduces that code
(its frequency formula transcribed in float32 as written; what had to change for it to run at all is listed in
docs/parity/rope.md), per index by axis in the interleaved layout; `mrope++` stays the paper's formula.
Argument mapping: dim = D, base = rope_theta, max_position_embeddings = L, max_target_position = L' =
round(s L), mrope_section from the config, scale = s (the code's own default scale=1 only matters when
ntk_factor < 1), ntk_factor = `rope_parameters["ntk_factor"]` (default 1.0 as in the code;
`apply_position_extension(..., ntk_factor=f)`).

How it plugs in: the choice lives in the text config's `rope_parameters` (`rope_type`, `factor` = s,
`original_max_position_embeddings` = L) and `max_position_embeddings` becomes L'. transformers'
`ROTARY_CLASSES` (`Qwen2VLRotaryEmbedding`, `Qwen2_5_VLRotaryEmbedding`, `Qwen3VLTextRotaryEmbedding`,
`Qwen3_5TextRotaryEmbedding`) compute their D/2 frequencies with `ROPE_INIT_FUNCTIONS[rope_type](config)`,
the library's documented extension point, so no forward code is patched (`dynamic_rope_update` only acts on
"dynamic" / "longrope" types; the `longvlm_*` attention scaling is 1):
`register()` (run when `longvlm.vlm` is imported) adds the four `longvlm_*` types there and a matching
`_validate_<rope_type>_rope_parameters` method to `RotaryEmbeddingConfigMixin` (the name transformers looks up
when it validates a config). `save_pretrained` / `from_pretrained` round-trip the choice; loading a
`longvlm_*` checkpoint needs `import longvlm.vlm` first, `linear` and `yarn` ones load in plain transformers.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from transformers import PretrainedConfig, PreTrainedModel
from transformers import modeling_rope_utils as rope_utils

from longvlm.errors import ConfigError

METHODS: dict[str, str] = {
    "extrapolation": "longvlm_extrapolation",
    "linear": "linear",
    "ntk": "longvlm_ntk",
    "yarn": "yarn",
    "mrope++": "longvlm_mrope_pp",
    "mrope++code": "longvlm_mrope_pp_code",
}
ALIASES = {"pi": "linear", "mrope_pp": "mrope++", "m-rope++": "mrope++", "ntk-aware": "ntk",
           "mrope_pp_code": "mrope++code", "m-rope++code": "mrope++code"}
CODE_NTK_FACTOR = 1.0  # GIRAFFE's default `ntk_factor` (mrope_plus_mokey_patch.py:17)
NO_EXTENSION = ("none", "default")
ROTARY_CLASSES = ("Qwen2VLRotaryEmbedding", "Qwen2_5_VLRotaryEmbedding", "Qwen3VLTextRotaryEmbedding",
                  "Qwen3_5TextRotaryEmbedding", "DeepseekV3RotaryEmbedding")
# DeepseekV3RotaryEmbedding (Kimi K2.5's LLM): 1D RoPE over qk_rope_head_dim (its config's head_dim); the 1D
# methods (extrapolation, linear, ntk, yarn) apply, the M-RoPE++ methods need an mrope_section and refuse.
QWEN2_VL_MROPE_SECTION = [16, 24, 24]  # what transformers' rotary class assumes when the config has none
# model_type (text configs add "_text") -> (interleaved layout, the mrope_section its rotary class assumes when
# the config has none): modeling_qwen2_vl.py:104/138, modeling_qwen2_5_vl.py:508/542,
# modeling_qwen3_vl.py:373/409, modeling_qwen3_5.py:147/185 (transformers 5.25)
MROPE_FAMILIES: dict[str, tuple[bool, list[int]]] = {
    "qwen2_vl": (False, QWEN2_VL_MROPE_SECTION),
    "qwen2_5_vl": (False, QWEN2_VL_MROPE_SECTION),
    "qwen3_vl": (True, [24, 20, 20]),
    "qwen3_5": (True, [11, 11, 10]),
}
TEMPORAL, HEIGHT, WIDTH = 0, 1, 2  # the axes of `mrope_axes`


@dataclass(frozen=True)
class PositionExtension:
    """A context extension as stored in a text config: method name, scale s and training length L."""

    method: str
    scale: float
    train_length: int

    @property
    def max_length(self) -> int:
        """L' = s * L, the extended length."""
        return int(round(self.scale * self.train_length))


# -- frequencies -----------------------------------------------------------------------------------------
def _params(config, rope_parameters: dict | None) -> dict:
    return config.rope_parameters if rope_parameters is None else rope_parameters


def rotary_dim(config, rope_parameters: dict | None = None) -> int:
    """D = int(head_dim * partial_rotary_factor), the rotated dims per head as transformers computes them."""
    head_dim = getattr(config, "head_dim", None) or config.hidden_size // config.num_attention_heads
    return int(head_dim * _params(config, rope_parameters).get("partial_rotary_factor", 1.0))


def default_inv_freq(config, device: torch.device | str | None = None) -> torch.Tensor:
    """theta_d = base^(-2d/D), computed exactly as transformers' rotary classes do."""
    base = config.rope_parameters["rope_theta"]
    dim = rotary_dim(config)
    return 1.0 / (base ** (torch.arange(0, dim, 2, dtype=torch.float, device=device) / dim))


def _family(config) -> tuple[bool, list[int]] | None:
    model_type = str(getattr(config, "model_type", "") or "")
    return MROPE_FAMILIES.get(model_type.removesuffix("_text"))


def mrope_section(config, rope_parameters: dict | None = None) -> list[int]:
    """The config's `mrope_section` [t, h, w] (else its rotary class's default), checked to sum to D/2."""
    half = rotary_dim(config, rope_parameters) // 2
    section = _params(config, rope_parameters).get("mrope_section")
    if section is None:
        section = (_family(config) or (False, QWEN2_VL_MROPE_SECTION))[1]
        if half != sum(section):
            raise ConfigError(f"rope_parameters has no mrope_section and rotary dim/2 = {half} != {sum(section)} "
                              f"(the default {section})")
    if len(section) != 3 or sum(section) != half or min(section) < 0:
        raise ConfigError(f"mrope_section {section} must be three sizes summing to rotary dim/2 = {half}")
    return [int(n) for n in section]


def interleaved_mrope(config, rope_parameters: dict | None = None) -> bool:
    """Whether the config's rotary class interleaves the M-RoPE axes (Qwen3-VL, Qwen3.5) rather than keeping
    contiguous sections (Qwen2-VL, Qwen2.5-VL); `mrope_interleaved` decides only for other model types."""
    family = _family(config)
    if family is not None:
        return family[0]
    return bool(_params(config, rope_parameters).get("mrope_interleaved", False))


def frequency_axes(section: list[int], interleaved: bool) -> list[int]:
    """Axis (TEMPORAL, HEIGHT, WIDTH) of each of the sum(section) frequency indices d in a layout (plain ints:
    the init functions also run on the meta device, where tensors hold no values)."""
    t, h, w = section
    if not interleaved:  # Qwen2VLRotaryEmbedding.recomposition_frequencies: split by section, chunk i is axis i
        return [TEMPORAL] * t + [HEIGHT] * h + [WIDTH] * w
    # Qwen3VLTextRotaryEmbedding.recomposition_frequencies: axis k in (1, 2) overwrites slice(k, 3 section[k], 3)
    return [HEIGHT if d % 3 == 1 and d < 3 * h else WIDTH if d % 3 == 2 and d < 3 * w else TEMPORAL
            for d in range(t + h + w)]


def mrope_axes(config, rope_parameters: dict | None = None) -> list[int]:
    """Axis (TEMPORAL 0, HEIGHT 1, WIDTH 2) of each frequency index d of a text config, as its rotary class
    uses them: `frequency_axes(mrope_section(config), interleaved_mrope(config))`."""
    return frequency_axes(mrope_section(config, rope_parameters), interleaved_mrope(config, rope_parameters))


def mrope_pp_axes(config, rope_parameters: dict | None = None) -> list[int]:
    """`mrope_axes`, refused (ConfigError) when the temporal or width group is empty (M-RoPE++ is undefined)."""
    axes = mrope_axes(config, rope_parameters)
    if TEMPORAL not in axes or WIDTH not in axes:
        raise ConfigError("M-RoPE++ needs non-empty temporal and width sections, got mrope_section "
                          f"{mrope_section(config, rope_parameters)}")
    return axes


def _indices(axes: list[int], axis: int) -> list[int]:
    return [d for d, a in enumerate(axes) if a == axis]


def mrope_pp_factors(inv_freq: torch.Tensor, axes: list[int], scale: float, train_length: int) -> torch.Tensor:
    """Per-frequency multipliers theta'_d / theta_d of M-RoPE++ for the axes of `mrope_axes` (see the module
    docstring: 1 temporal, 1/s width, height ramped by wavelength over its band [b, e))."""
    extended = scale * train_length
    rotations = extended * inv_freq.double() / (2 * math.pi)  # r_d = L' / lambda_d
    factors = torch.full_like(rotations, 1.0 / scale)
    factors[_indices(axes, TEMPORAL)] = 1.0
    height = _indices(axes, HEIGHT)
    if height:
        first, end = height[0], height[-1] + 1
        r_end = rotations[end] if end < len(axes) else rotations[-1] ** 2 / rotations[-2]
        ramp = (rotations[height] - r_end) / (rotations[first] - r_end)
        factors[height] = 1.0 / scale + (1.0 - 1.0 / scale) * ramp
    return factors.to(inv_freq.dtype)


def _scale_and_length(config) -> tuple[float, int]:
    params = config.rope_parameters
    scale = float(params["factor"])
    length = params.get("original_max_position_embeddings") or round(config.max_position_embeddings / scale)
    return scale, int(length)


def _compute_extrapolation_parameters(config, device=None, seq_len=None, layer_type=None):
    """Unchanged frequencies: the model is simply run past its training length."""
    return default_inv_freq(config, device), 1.0


def _compute_ntk_parameters(config, device=None, seq_len=None, layer_type=None):
    """NTK-aware scaling: base' = base * s^(D / (D - 2)) for all frequencies (D the rotary dim)."""
    scale, _ = _scale_and_length(config)
    dim = rotary_dim(config)
    base = config.rope_parameters["rope_theta"] * scale ** (dim / (dim - 2))
    return 1.0 / (base ** (torch.arange(0, dim, 2, dtype=torch.float, device=device) / dim)), 1.0


def _compute_mrope_pp_parameters(config, device=None, seq_len=None, layer_type=None):
    """M-RoPE++: extrapolate temporal, ramp height, interpolate width frequencies; attention scaling 1."""
    scale, length = _scale_and_length(config)
    inv_freq = default_inv_freq(config, device)
    return inv_freq * mrope_pp_factors(inv_freq, mrope_pp_axes(config), scale, length), 1.0


def giraffe_code_inv_freq(dim: int, base: float, train_length: int, target_length: int, section: list[int],
                          scale: float = 1.0, ntk_factor: float = CODE_NTK_FACTOR,
                          device: torch.device | str | None = None, interleaved: bool = False) -> torch.Tensor:
    """The frequencies of GIRAFFE's `Qwen2RotaryEmbeddingMRoPEPP.__init__` (kiaia/GIRAFFE, commit ee35955,
    models/mrope_plus_mokey_patch.py lines 27-71), same operations in the same (float32) precision; argument
    names there: dim, base, max_position_embeddings = train_length, max_target_position = target_length,
    mrope_section = section, scale, ntk_factor. The code slices contiguous sections; `interleaved` picks each
    index's branch by its axis in the interleaved layout instead (`frequency_axes`)."""
    if train_length <= 1 or dim <= 2:
        raise ConfigError(f"GIRAFFE's NTK base needs a training length > 1 and rotary dim > 2, got L = "
                          f"{train_length}, rotary dim = {dim}")
    exponents = torch.arange(0, dim, 2).float().to(device) / dim
    inv_freq_base = 1.0 / (base ** exponents)  # temporal: extrapolation
    inv_freq_linear = 1.0 / (scale * (base ** exponents))  # position interpolation by `scale`
    ntk_base = base * ((target_length - 1) / (train_length - 1)) ** (dim / (dim - 2))
    inv_freq_ntk = 1.0 / (ntk_base ** exponents)
    if dim // 2 != sum(section):  # the code's assert (line 46)
        raise ConfigError(f"mrope_section {section} must sum to rotary dim/2 = {dim // 2}")
    axes = frequency_axes(section, interleaved)
    temporal, height = _indices(axes, TEMPORAL), _indices(axes, HEIGHT)
    inv_freq = inv_freq_ntk.clone()  # width
    inv_freq[temporal] = inv_freq_base[temporal]
    inv_freq[height] = inv_freq_linear[height] * (1 - ntk_factor) + inv_freq_ntk[height] * ntk_factor
    return inv_freq


def _compute_mrope_pp_code_parameters(config, device=None, seq_len=None, layer_type=None):
    """M-RoPE++ as GIRAFFE's code computes it (see `giraffe_code_inv_freq`); attention scaling 1 (none there)."""
    scale, length = _scale_and_length(config)
    params = config.rope_parameters
    inv_freq = giraffe_code_inv_freq(rotary_dim(config), params["rope_theta"], length, int(round(scale * length)),
                                     mrope_section(config), scale, params.get("ntk_factor", CODE_NTK_FACTOR),
                                     device, interleaved_mrope(config))
    return inv_freq, 1.0


INIT_FUNCTIONS = {
    "longvlm_extrapolation": _compute_extrapolation_parameters,
    "longvlm_ntk": _compute_ntk_parameters,
    "longvlm_mrope_pp": _compute_mrope_pp_parameters,
    "longvlm_mrope_pp_code": _compute_mrope_pp_code_parameters,
}


def _make_validator(rope_type: str):
    code = rope_type == "longvlm_mrope_pp_code"
    optional = {"rope_theta", "original_max_position_embeddings", "mrope_section", "mrope_interleaved",
                *(("ntk_factor",) if code else ())}

    def validate(self, rope_parameters, ignore_keys=None) -> None:
        self._check_received_keys(rope_type, set(rope_parameters), {"rope_type", "factor"}, set(optional),
                                  ignore_keys=ignore_keys)
        factor = rope_parameters["factor"]
        if not _is_number(factor) or not math.isfinite(factor) or factor < 1:
            raise ConfigError(f"rope_parameters factor must be a number >= 1 for {rope_type}, got {factor!r}")
        if rope_type == "longvlm_mrope_pp":
            mrope_pp_axes(self, rope_parameters)
        if code:
            mrope_section(self, rope_parameters)
            ntk_factor = rope_parameters.get("ntk_factor", CODE_NTK_FACTOR)
            if not _is_number(ntk_factor) or not 0 <= ntk_factor <= 1:
                raise ConfigError(f"rope_parameters ntk_factor must be a number in [0, 1], got {ntk_factor!r}")
            length = rope_parameters.get("original_max_position_embeddings")
            if length is not None and (not _is_number(length) or length <= 1):
                raise ConfigError(f"{rope_type} needs original_max_position_embeddings > 1, got {length!r}")

    validate.__name__ = f"_validate_{rope_type}_rope_parameters"
    return validate


def _is_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def register() -> None:
    """Add the longvlm rope types to transformers (init functions and config validators); idempotent."""
    for rope_type, fn in INIT_FUNCTIONS.items():
        rope_utils.ROPE_INIT_FUNCTIONS[rope_type] = fn
        name = f"_validate_{rope_type}_rope_parameters"
        if not hasattr(rope_utils.RotaryEmbeddingConfigMixin, name):
            setattr(rope_utils.RotaryEmbeddingConfigMixin, name, _make_validator(rope_type))


# -- selecting a method --------------------------------------------------------------------------------------
def canonical_method(method: str | None) -> str | None:
    """User-facing method name (aliases resolved); None for no extension. Raises ConfigError if unknown."""
    if method is None or method.lower() in NO_EXTENSION:
        return None
    name = ALIASES.get(method.lower(), method.lower())
    if name not in METHODS:
        raise ConfigError(f"unknown position extension {method!r}; known: {', '.join(METHODS)} (or 'none')")
    return name


def _text_config(target) -> tuple[PreTrainedModel | None, PretrainedConfig]:
    """(model or None, text config) of a VLM (anything with a `.model`), a model, or a config."""
    if isinstance(target, PretrainedConfig):
        model, config = None, target
    elif isinstance(target, PreTrainedModel):
        model, config = target, target.config
    elif isinstance(getattr(target, "model", None), PreTrainedModel):
        model, config = target.model, target.model.config
    else:
        raise ConfigError(f"expected a VLM, a model or a config, got {type(target).__name__}")
    text = getattr(config, "text_config", None) or config
    if not isinstance(getattr(text, "rope_parameters", None), dict):
        raise ConfigError(f"{type(config).__name__} has no rope_parameters to extend")
    return model, text


def position_extension(target) -> PositionExtension | None:
    """The extension stored in a VLM's / model's / config's text config, or None for the plain model."""
    _, text = _text_config(target)
    params = text.rope_parameters
    by_type = {rope_type: name for name, rope_type in METHODS.items()}
    if params.get("rope_type") not in by_type:
        return None
    scale, length = _scale_and_length(text)
    return PositionExtension(by_type[params["rope_type"]], scale, length)


def apply_position_extension(target, method: str | None, scale: float = 1.0, *,
                             train_length: int | None = None,
                             ntk_factor: float | None = None) -> PositionExtension | None:
    """Extend the context of a VLM, a Qwen2(.5)-VL / Qwen3-VL / Qwen3.5 / Kimi K2.5 model or its config by
    `scale` (Kimi's 1D RoPE: the 1D methods only).

    `train_length` (L) defaults to the length already recorded (a re-applied extension replaces the old one)
    or else to `max_position_embeddings`. The config is rewritten (rope_parameters and
    max_position_embeddings = L * scale); for a model the rotary embedding is rebuilt from it, exactly as
    `from_pretrained` would. `method=None` / 'none' restores the plain model. `ntk_factor` (only for
    'mrope++code'; default 1.0, GIRAFFE's) is the code's height mix between PI and NTK. Returns the stored
    extension.
    """
    register()
    model, text = _text_config(target)
    name = canonical_method(method)
    if ntk_factor is not None and name != "mrope++code":
        raise ConfigError(f"ntk_factor only applies to mrope++code, not to {name or 'none'}")
    if name in ("mrope++", "mrope++code") and "mrope_section" not in text.rope_parameters and (
            str(getattr(text, "model_type", "")).removesuffix("_text") not in MROPE_FAMILIES):
        raise ConfigError(f"{name} scales the temporal/height/width sections of M-RoPE; this model "
                          f"({getattr(text, 'model_type', '?')}) uses 1D RoPE: use linear, ntk or yarn")
    current = position_extension(text)
    length = int(train_length or (current.train_length if current else text.max_position_embeddings))
    if length <= 0:
        raise ConfigError(f"training length must be positive, got {length}")
    if not isinstance(scale, (int, float)) or not math.isfinite(scale) or scale < 1:
        raise ConfigError(f"position extension scale must be a number >= 1, got {scale!r}")
    kept_keys = ("rope_theta", "mrope_section", "mrope_interleaved", "partial_rotary_factor")
    keep = {k: v for k, v in text.rope_parameters.items() if k in kept_keys}
    if name is None:
        params, max_length = {"rope_type": "default", **keep}, length
    else:
        params = {"rope_type": METHODS[name], **keep, "factor": float(scale)}
        if name != "linear":  # transformers' linear validator knows no training length (it is max_len / factor)
            params["original_max_position_embeddings"] = length
        if name == "mrope++code":
            params["ntk_factor"] = CODE_NTK_FACTOR if ntk_factor is None else ntk_factor  # validated below
        max_length = int(round(length * scale))
    previous = text.rope_parameters, text.max_position_embeddings
    text.rope_parameters, text.max_position_embeddings = params, max_length
    try:
        text.validate_rope()
    except Exception:
        text.rope_parameters, text.max_position_embeddings = previous  # leave the config as it was
        raise
    if model is not None:
        _rebuild_rotary_embeddings(model, text)
    return position_extension(text)


def _rebuild_rotary_embeddings(model: PreTrainedModel, text_config: PretrainedConfig) -> None:
    """Replace the LLM's rotary embedding by a fresh one of the same class built from the updated config."""
    replaced = 0
    for parent in list(model.modules()):
        for child_name, child in list(parent.named_children()):
            if type(child).__name__ in ROTARY_CLASSES and child.config is text_config:
                fresh = type(child)(config=text_config).to(device=child.inv_freq.device)
                setattr(parent, child_name, fresh)
                replaced += 1
    if replaced == 0:
        raise ConfigError(f"no {' / '.join(ROTARY_CLASSES)} found in {type(model).__name__}: this transformers "
                          "version builds its rotary embedding differently; longvlm.vlm.rope needs updating")


register()
