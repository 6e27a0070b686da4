import numpy as np
import pytest
import torch
from PIL import Image
from transformers.models.qwen2_vl.image_processing_pil_qwen2_vl import Qwen2VLImageProcessorPil
from transformers.models.qwen2_vl.image_processing_pil_qwen2_vl import smart_resize as hf_smart_resize

from longvlm.processing.patches import image_patches, patchify, video_patches
from longvlm.processing.resize import smart_resize
from longvlm.processing.spec import VisionSpec
from longvlm.errors import LongVLMError
from longvlm.vlm.loading import family_vision_spec


def test_smart_resize_matches_transformers_on_many_sizes():
    rng = np.random.default_rng(0)
    sizes = [(int(h), int(w)) for h, w in rng.integers(10, 5000, size=(2000, 2))]
    sizes += [(28, 28), (1, 150), (56, 56), (720, 1280), (1684, 1190), (4000, 30)]
    bounds = [(56 * 56, 28 * 28 * 1280), (28 * 28 * 4, 28 * 28 * 256), (100 * 28 * 28, 16384 * 28 * 28)]
    for h, w in sizes:
        if max(h, w) / min(h, w) > 200:
            continue
        for lo, hi in bounds:
            assert smart_resize(h, w, 28, lo, hi) == hf_smart_resize(h, w, 28, lo, hi), (h, w, lo, hi)


def test_smart_resize_rejects_extreme_aspect():
    with pytest.raises(LongVLMError, match="aspect ratio"):
        smart_resize(10, 3000)


@pytest.mark.parametrize("max_pixels", [28 * 28 * 64, 200_000, 28 * 28 * 1280])
def test_image_patches_equal_transformers_processor(max_pixels):
    spec = VisionSpec(max_pixels=max_pixels)
    processor = Qwen2VLImageProcessorPil(min_pixels=spec.min_pixels, max_pixels=spec.max_pixels)
    rng = np.random.default_rng(1)
    images = [Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8))
              for h, w in [(100, 200), (333, 517), (900, 640), (57, 1000)]]
    expected = processor(images, return_tensors="pt")
    pixels, grid = image_patches(images, [spec.resized(im.height, im.width) for im in images], spec)
    assert torch.equal(grid, expected["image_grid_thw"])
    torch.testing.assert_close(pixels, expected["pixel_values"], atol=1e-5, rtol=0)


@pytest.mark.parametrize("family", ["qwen3_vl", "qwen3_5"])
def test_patch16_families_equal_transformers_processor(family):
    """Qwen3-VL / Qwen3.5 ship Qwen2-VL's image processor with patch 16 and mean = std = 0.5: the same sizes,
    grids and pixels as longvlm's spec for the family. (Their video processor needs torchvision, which does
    not import here; video patches are pinned to image patches by test_video_patch_layout.)"""
    spec = family_vision_spec(family)
    assert (spec.patch_size, spec.factor, spec.image_mean) == (16, 32, (0.5, 0.5, 0.5))
    processor = Qwen2VLImageProcessorPil(patch_size=16, image_mean=spec.image_mean, image_std=spec.image_std,
                                         min_pixels=spec.min_pixels, max_pixels=spec.max_pixels)
    rng = np.random.default_rng(4)
    images = [Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8))
              for h, w in [(100, 200), (333, 517), (900, 640), (57, 1000), (720, 1280)]]
    expected = processor(images, return_tensors="pt")
    pixels, grid = image_patches(images, [spec.resized(im.height, im.width) for im in images], spec)
    assert torch.equal(grid, expected["image_grid_thw"])
    torch.testing.assert_close(pixels, expected["pixel_values"], atol=1e-5, rtol=0)


def test_video_patch_layout():
    """Two identical frames give the image patches; each patch holds [C, T, p, p] with frame t at T=t."""
    spec = VisionSpec()
    rng = np.random.default_rng(2)
    frames = rng.integers(0, 256, (4, 56, 84, 3), dtype=np.uint8)
    still, _ = video_patches([frames[0], frames[0]], (56, 84), spec)
    image, _ = image_patches([frames[0]], [(56, 84)], spec)
    assert torch.equal(still, image)
    pixels, grid = video_patches(list(frames), (56, 84), spec)
    assert grid.tolist() == [[2, 4, 6]]
    per_step = 4 * 6
    p = spec.patch_size
    first_pair = pixels[:per_step].view(per_step, 3, 2, p, p)
    single0, _ = image_patches([frames[0]], [(56, 84)], spec)
    single1, _ = image_patches([frames[1]], [(56, 84)], spec)
    assert torch.equal(first_pair[:, :, 0], single0.view(per_step, 3, 2, p, p)[:, :, 0])
    assert torch.equal(first_pair[:, :, 1], single1.view(per_step, 3, 2, p, p)[:, :, 0])
    second_pair, _ = video_patches(list(frames[2:]), (56, 84), spec)
    assert torch.equal(pixels[per_step:], second_pair)  # temporal steps are consecutive blocks


def test_patch_order_follows_merge_windows():
    """Tokens 0..3 of an image are the 2x2 patches of its top-left merge window (what PatchMerger expects)."""
    spec = VisionSpec()
    frame = np.zeros((1, 3, 56, 56), np.float32)
    for r in range(4):
        for c in range(4):
            frame[0, :, r * 14:(r + 1) * 14, c * 14:(c + 1) * 14] = r * 4 + c
    patches, grid = patchify(frame, spec)
    assert grid == (1, 4, 4)
    assert patches[:, 0].tolist() == [0, 1, 4, 5, 2, 3, 6, 7, 8, 9, 12, 13, 10, 11, 14, 15]


def test_odd_frame_count_pads_with_last_frame():
    spec = VisionSpec()
    frames = np.random.default_rng(3).random((3, 3, 28, 28), dtype=np.float32)
    padded, grid = patchify(frames, spec)
    explicit, _ = patchify(np.concatenate([frames, frames[-1:]]), spec)
    assert grid == (2, 2, 2) and torch.equal(padded, explicit)


def test_spec_roundtrips_preprocessor_config():
    spec = VisionSpec(min_pixels=1000, max_pixels=50000)
    assert VisionSpec.from_preprocessor_config(spec.to_preprocessor_config()) == spec
    assert VisionSpec.from_preprocessor_config({"min_pixels": 3136, "max_pixels": 12845056}).max_pixels == 12845056
