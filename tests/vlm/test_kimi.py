"""Kimi K2.5 (MoonViT): sizing and pixel layout against transformers' own processor code, planned tokens against
the tower's output, 1D positions, the MLA latent KV cache, and pre-encoded features in the forward."""

import __future__
import ast
import math
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
import transformers.models.kimi_k25 as kimi_k25_pkg
from transformers import image_utils
from transformers.modeling_outputs import BaseModelOutputWithPooling
from transformers.models.kimi_k25.modeling_kimi_k25 import Kimi_K25MultimodalProjection, Kimi_K25VisionModel

from longvlm.errors import ConfigError, InputError
from longvlm.vlm.kimi import (KIMI_TEXT_HIDDEN, build_kimi_tiny, kimi_encoder_config, kimi_grid, kimi_image_tokens,
                              kimi_padded, kimi_patches, kimi_resized, kimi_tokens, kimi_video_patches,
                              kimi_video_tokens, kimi_vision_config_full)

KIMI_DIR = Path(kimi_k25_pkg.__file__).parent
IMAGE_FILE, VIDEO_FILE = KIMI_DIR / "image_processing_kimi_k25.py", KIMI_DIR / "video_processing_kimi_k25.py"


def transformers_code(path: Path, wanted: set[str]) -> tuple[dict, dict]:
    """The `wanted` functions and class methods (as `Class.method`) of a transformers file, and its classes'
    plain attribute defaults, read from the source: the Kimi processors import torchvision, absent here."""
    tree = ast.parse(path.read_text())
    defs, defaults = [], {}
    for node in tree.body:
        if isinstance(node, ast.FunctionDef):
            defs.append((node.name, node))
        elif isinstance(node, ast.ClassDef):
            for item in node.body:
                if isinstance(item, ast.FunctionDef):
                    defs.append((f"{node.name}.{item.name}", item))
                elif isinstance(item, ast.Assign) and isinstance(item.targets[0], ast.Name):
                    value = item.value
                    defaults[f"{node.name}.{item.targets[0].id}"] = (
                        getattr(image_utils, value.id, value.id) if isinstance(value, ast.Name)
                        else ast.literal_eval(value) if isinstance(value, (ast.Constant, ast.Dict, ast.Tuple))
                        else None)
    functions = {}
    for name, node in defs:
        if name not in wanted:
            continue
        scope = {"math": math, "torch": torch}
        module = ast.Module(body=[node], type_ignores=[])
        exec(compile(module, str(path), "exec", flags=__future__.annotations.compiler_flag), scope)
        functions[name] = scope[node.name]
    return functions, defaults


IMAGE_CODE, IMAGE_DEFAULTS = transformers_code(IMAGE_FILE, {"navit_resize", "Kimi_K25ImageProcessor.patchify"})
VIDEO_CODE, VIDEO_DEFAULTS = transformers_code(VIDEO_FILE, {"Kimi_K25VideoProcessor.patchify"})
navit_resize = IMAGE_CODE["navit_resize"]


def reference_pixels(frames: np.ndarray, padded: tuple[int, int], video: bool) -> torch.Tensor:
    """transformers' pad -> fused rescale/normalise -> patchify, on uint8 [T, H, W, 3] already at size."""
    x = torch.from_numpy(frames).permute(0, 3, 1, 2)
    x = F.pad(x, (0, padded[1] - x.shape[-1], 0, padded[0] - x.shape[-2]), value=0)  # tvF.pad (0, 0, r, b)
    mean = torch.tensor(image_utils.IMAGENET_STANDARD_MEAN).view(3, 1, 1) * 255
    std = torch.tensor(image_utils.IMAGENET_STANDARD_STD).view(3, 1, 1) * 255
    x = (x.float() - mean) / std
    if video:
        return VIDEO_CODE["Kimi_K25VideoProcessor.patchify"](None, x[None], 14)[0][0]
    return torch.cat([IMAGE_CODE["Kimi_K25ImageProcessor.patchify"](None, x, 14)[0].flatten(0, 1)])


@pytest.fixture(scope="module")
def tiny():
    return build_kimi_tiny()


def test_processor_defaults_are_the_modelled_ones():
    assert IMAGE_DEFAULTS["Kimi_K25ImageProcessor.max_patches"] == 16384
    assert VIDEO_DEFAULTS["Kimi_K25VideoProcessor.max_patches"] == 4096
    assert VIDEO_DEFAULTS["Kimi_K25VideoProcessor.temporal_patch_size"] == 4
    for defaults, cls in [(IMAGE_DEFAULTS, "Kimi_K25ImageProcessor"), (VIDEO_DEFAULTS, "Kimi_K25VideoProcessor")]:
        assert defaults[f"{cls}.size"] == {"max_height": 512, "max_width": 512}
        assert defaults[f"{cls}.patch_size"] == 14 and defaults[f"{cls}.merge_size"] == 2
        assert list(defaults[f"{cls}.image_mean"]) == list(defaults[f"{cls}.image_std"]) == [0.5, 0.5, 0.5]
    assert kimi_vision_config_full().pos_emb_time == VIDEO_DEFAULTS["Kimi_K25VideoProcessor.temporal_patch_size"]


SIZES = [(1, 1), (10, 10), (27, 29), (720, 1280), (1280, 720), (2200, 1700), (300, 3000), (3000, 300),
         (7169, 100), (100, 20000), (1799, 1799), (4000, 3000), (613, 941), (50, 9999)]


@pytest.mark.parametrize("max_pixels", [None, 4096 * 196, 1003520, 64 * 196, 200])
def test_sizing_matches_navit_resize(max_pixels):
    for h, w in SIZES:
        max_patches = 16384 if max_pixels is None else max_pixels // 196
        resized, padded = navit_resize(h, w, 14, 2, max_patches, 512)
        assert kimi_resized(h, w, max_pixels) == resized, (h, w)
        assert kimi_padded(*kimi_resized(h, w, max_pixels)) == padded
        assert kimi_tokens(*resized) == padded[0] // 14 * (padded[1] // 14) // 4  # get_number_of_image_patches / 4
    assert kimi_resized(720, 1280, video=True) == navit_resize(720, 1280, 14, 2, 4096, 512)[0] == (676, 1202)


def test_sizing_facts():
    assert kimi_resized(10, 10) == (10, 10) and kimi_tokens(10, 10) == 1  # no upscaling, no minimum
    assert kimi_resized(2200, 1700, 1003520) == (1142, 882)  # 5120-patch budget ...
    assert kimi_padded(1142, 882) == (1148, 896) and kimi_tokens(1142, 882) == 1312  # ... 5248 patches after padding
    assert kimi_tokens(676, 1202, frames=9) == 3 * 1075  # ceil(9 / 4) chunks
    assert kimi_grid(676, 1202, frames=9).tolist() == [[4, 50, 86], [4, 50, 86], [1, 50, 86]]
    with pytest.raises(InputError):
        kimi_resized(0, 10)
    with pytest.raises(ConfigError):
        kimi_resized(100, 100, max_pixels=100)


def test_image_layout_matches_processor():
    rng = np.random.default_rng(0)
    sizes = [kimi_resized(h, w, 300 * 196) for h, w in [(613, 941), (3000, 300), (37, 1000), (56, 84), (10, 10)]]
    images = [rng.integers(0, 256, (h, w, 3), dtype=np.uint8) for h, w in sizes]
    pixels, grid = kimi_patches(images, sizes)
    expected = torch.cat([reference_pixels(img[None], kimi_padded(*s), video=False) for img, s in zip(images, sizes)])
    assert pixels.shape == expected.shape and pixels.shape[1:] == (3, 14, 14)
    torch.testing.assert_close(pixels, expected, rtol=0, atol=1e-6)
    assert grid.tolist() == [[1, kimi_padded(*s)[0] // 14, kimi_padded(*s)[1] // 14] for s in sizes]
    assert (pixels[-1] == -1).all()  # padding is black before normalisation: -1 after


def test_video_layout_matches_processor():
    rng = np.random.default_rng(1)
    size = kimi_resized(720, 1280, 120 * 196, video=True)
    frames = rng.integers(0, 256, (6, *size, 3), dtype=np.uint8)
    pixels, grid = kimi_video_patches(list(frames), size)
    chunks = [frames[0:4], frames[4:6]]  # Kimi_K25VideoProcessor._preprocess: chunks of temporal_patch_size
    expected = torch.cat([reference_pixels(c, kimi_padded(*size), video=True) for c in chunks])
    torch.testing.assert_close(pixels, expected, rtol=0, atol=1e-6)
    gh, gw = (s // 14 for s in kimi_padded(*size))
    assert grid.tolist() == [[4, gh, gw], [2, gh, gw]]


CASES = [  # (original height, width, max_pixels or None, video)
    (280, 2800, None, False), (2800, 280, None, False), (300, 3000, 500 * 196, False),  # 1:10 and 10:1 pages
    (720, 1280, None, False), (720, 1280, None, True),  # a 1280x720 frame as an image and as a video frame
    (2200, 1700, 1003520, False), (10, 10, None, False), (613, 941, 2000 * 196, False), (5, 900, None, False),
]


@torch.no_grad()
def test_planned_tokens_equal_tower_rows(tiny):
    model, _ = tiny
    for h, w, max_pixels, video in CASES:
        size = kimi_resized(h, w, max_pixels, video=video)
        frames = [np.zeros((*size, 3), np.uint8)]
        out = (kimi_video_tokens if video else kimi_image_tokens)(model, frames, size if video else [size])
        assert [len(x) for x in out] == [kimi_tokens(*size)], (h, w, max_pixels)
        assert out[0].shape[1] == model.config.text_config.hidden_size


@torch.no_grad()
def test_video_tokens_per_chunk(tiny):
    model, _ = tiny
    size = kimi_resized(720, 1280, 100 * 196, video=True)
    for count in [1, 3, 4, 5, 9]:
        frames = list(np.random.default_rng(count).integers(0, 256, (count, *size, 3), dtype=np.uint8))
        out = kimi_video_tokens(model, frames, size)
        assert len(out) == math.ceil(count / 4)
        assert sum(len(x) for x in out) == kimi_tokens(*size, frames=count)
        assert all(len(x) == kimi_tokens(*size) for x in out)  # one frame's worth per chunk
    pixels, grid = kimi_video_patches(frames[:5], size)  # a 5-frame grid row overflows the 4+1-row time table
    with pytest.raises(IndexError):
        model.model.get_video_features(pixels, torch.tensor([[5, *grid[0, 1:].tolist()]]))


def prompt(tokenizer, config, image_counts=(), video_counts=()) -> torch.Tensor:
    """'question' + per item: vision_start, placeholders x tokens, vision_end."""
    ids = tokenizer("describe:", add_special_tokens=False)["input_ids"]
    for token_id, counts in [(config.image_token_id, image_counts), (config.video_token_id, video_counts)]:
        for n in counts:
            ids += [config.vision_start_token_id] + [token_id] * n + [config.vision_end_token_id]
    return torch.tensor([ids + tokenizer(" ok", add_special_tokens=False)["input_ids"]])


@torch.no_grad()
def test_pre_encoded_features_give_identical_logits(tiny):
    model, tokenizer = tiny
    rng = np.random.default_rng(2)
    sizes = [(56, 84), (45, 30)]
    images = [rng.integers(0, 256, (h, w, 3), dtype=np.uint8) for h, w in sizes]
    frames = list(rng.integers(0, 256, (5, 28, 56, 3), dtype=np.uint8))
    pixels, grid = kimi_patches(images, sizes)
    vpixels, vgrid = kimi_video_patches(frames, (28, 56))
    counts = [kimi_tokens(*s) for s in sizes]
    ids = prompt(tokenizer, model.config, counts, [kimi_tokens(28, 56, frames=5)])
    direct = model(input_ids=ids, pixel_values=pixels, image_grid_thw=grid, pixel_values_videos=vpixels,
                   video_grid_thw=vgrid).logits
    features = {"image": BaseModelOutputWithPooling(pooler_output=kimi_image_tokens(model, images, sizes)),
                "video": BaseModelOutputWithPooling(pooler_output=kimi_video_tokens(model, frames, (28, 56)))}
    encoded = model(input_ids=ids, mm_encoder_outputs=features).logits
    assert torch.equal(direct, encoded)
    features["image"].pooler_output = [f.flip(0) for f in features["image"].pooler_output]  # they are used
    assert not torch.allclose(model(input_ids=ids, mm_encoder_outputs=features).logits, direct)


@torch.no_grad()
def test_positions_are_1d_and_cache_is_the_mla_latent(tiny):
    model, tokenizer = tiny
    size = (56, 84)
    image = np.random.default_rng(3).integers(0, 256, (*size, 3), dtype=np.uint8)
    features = {"image": BaseModelOutputWithPooling(pooler_output=kimi_image_tokens(model, [image], [size]))}
    ids = prompt(tokenizer, model.config, [kimi_tokens(*size)])
    seq = ids.shape[1]
    assert not hasattr(model.model, "get_rope_index")
    plain = model(input_ids=ids, mm_encoder_outputs=dict(features), use_cache=True)
    explicit = model(input_ids=ids, mm_encoder_outputs=dict(features), position_ids=torch.arange(seq)[None]).logits
    assert torch.equal(plain.logits, explicit)  # visual tokens take ordinary consecutive positions
    shifted = model(input_ids=ids, mm_encoder_outputs=dict(features), position_ids=torch.arange(seq)[None] + 7)
    assert not torch.allclose(shifted.logits, plain.logits)
    text = model.config.text_config
    assert len(plain.cache.layers) == text.num_hidden_layers
    for layer in plain.cache.layers:  # compressed latent and shared rotary key, not per-head K/V
        assert layer.keys.shape == (1, 1, seq, text.kv_lora_rank) == (1, 1, seq, 16)
        assert layer.values.shape == (1, 1, seq, text.qk_rope_head_dim) == (1, 1, seq, 8)
    step = model(input_ids=torch.tensor([[5]]), cache=plain.cache).logits[0, -1]  # position seq, from the cache
    full = model(input_ids=torch.cat([ids, torch.tensor([[5]])], 1), mm_encoder_outputs=dict(features)).logits
    torch.testing.assert_close(step, full[0, -1], rtol=1e-4, atol=1e-5)
    assert plain.cache.layers[0].keys.shape[2] == seq + 1


def test_full_size_encoder_config():
    config = kimi_encoder_config()
    vision = config.vision_config
    assert (vision.num_hidden_layers, vision.hidden_size, vision.intermediate_size, vision.num_attention_heads,
            vision.patch_size, tuple(vision.merge_kernel_size)) == (27, 1152, 4304, 16, 14, (2, 2))
    assert kimi_vision_config_full().to_dict() == type(vision)().to_dict()  # = the released defaults
    with torch.device("meta"):
        tower, projector = Kimi_K25VisionModel(vision), Kimi_K25MultimodalProjection(config)
    assert projector.in_proj.weight.shape == (4608, 4608)
    assert projector.out_proj.weight.shape == (KIMI_TEXT_HIDDEN, 4608)
    assert 400e6 < sum(p.numel() for p in tower.parameters()) < 420e6
