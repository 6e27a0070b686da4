"""Every model family end to end on real files (tiny random configs of the real classes): a PDF, a video and
images answered with evidence, every KV press and every visual compressor through `ask`, the position
extension, and a checkpoint directory round trip through `--model DIR`.

The machinery tests per family (chunked = single-pass logits, positions against each family's
`get_rope_index`, press scores against eager attention, budgets) are parametrized over
`longvlm.testing.FAMILY_PRESETS` in tests/pipeline, tests/presses, tests/compression, tests/memory and
tests/vlm.
"""

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from longvlm.cli import main
from longvlm.compression import VISUAL_COMPRESSORS, build_compressor
from longvlm.errors import ConfigError
from longvlm.memory.bridge import MemoryBridge, MemoryBridgeConfig
from longvlm.memory.streaming import MemoryOptions
from longvlm.options import Compression, Options
from longvlm.pipeline.answer import answer, model_inputs
from longvlm.pipeline.ask import ask
from longvlm.pipeline.encode import encode
from longvlm.presses import PRESSES, build_press
from longvlm.testing import FAMILY_PRESETS
from longvlm.vlm.loading import load_vlm
from longvlm.vlm.rope import apply_position_extension, position_extension

DATA = Path(__file__).resolve().parents[3] / "shared" / "data"
PDF = DATA / "mmlongbench-doc" / "documents" / "2310.07609v1.pdf"
VIDEO = next(iter(sorted(DATA.glob("**/dc_demo.mp4"))), None)
pytestmark = pytest.mark.skipif(not PDF.is_file() or VIDEO is None, reason="../shared/data not present")


@pytest.fixture(scope="module", params=FAMILY_PRESETS)
def vlm(request):
    return load_vlm(request.param)


def _images():
    rng = np.random.default_rng(0)
    return [Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8)) for h, w in [(300, 900), (700, 500)]]


def test_pdf_video_images_answered_with_evidence(vlm):
    """The same `ask` for every family: pages, frames (with their real times) and images as evidence."""
    options = Options(max_visual_tokens=400, max_pages=6, max_frames=16, max_new_tokens=4)
    pdf = ask(vlm, "What dataset is used?", str(PDF), options)
    assert [e.kind for e in pdf.evidence] == ["page"] * pdf.stats["visual_items"] and pdf.evidence[0].index == 1
    video = ask(vlm, "What happens at 0:05?", str(VIDEO), options)
    stamps = [e.timestamp for e in video.evidence]
    assert video.evidence[0].kind == "frame" and stamps == sorted(stamps) and len(stamps) >= 4
    images = ask(vlm, "Which image is wider?", _images(), options)
    assert [e.index for e in images.evidence] == [0, 1]
    for result in (pdf, video, images):
        assert result.route == "vlm" and result.stats["visual_tokens"] == result.stats["planned_visual_tokens"] <= 400
        assert result.stats["context_length"] == result.stats["visual_tokens"] + result.stats["text_tokens"]


def test_video_prompt_writes_each_patch_time(vlm):
    """Families with timestamped frames see each temporal patch after its time; the others one block."""
    encoded = encode(vlm, str(VIDEO), Options(max_visual_tokens=300, max_frames=8))
    ids = model_inputs(vlm, encoded, "q")["input_ids"][0]
    blocks = int((ids == vlm.config.vision_start_token_id).sum())
    text = vlm.tokenizer.decode(ids)
    patches = len(encoded.evidence) // vlm.vision.temporal_patch_size
    if vlm.family_spec.timestamped_frames:
        first = vlm.family_spec.time_text([e.timestamp for e in encoded.evidence[:vlm.vision.temporal_patch_size]])
        assert blocks == patches and first in text
    else:
        assert blocks == 1


@pytest.mark.parametrize("press", sorted(PRESSES))
def test_every_press(vlm, press):
    encoded = encode(vlm, str(PDF), Options(max_visual_tokens=300, max_pages=4))
    result = answer(vlm, encoded, "What dataset is used?", max_new_tokens=3, kv_press=build_press(press, 0.3))
    assert result.stats["kv_tokens_kept"] < 0.35 * result.stats["kv_tokens_full"]
    assert result.stats["kv_cache_bytes"] > 0 and result.stats["recurrent_state_bytes"] >= 0
    assert (result.stats["recurrent_state_bytes"] > 0) == (vlm.family == "qwen3_5")


@pytest.mark.parametrize("name", sorted(VISUAL_COMPRESSORS))
def test_every_compressor(vlm, name):
    """Each compressor sized from the family's hidden size (Oryx: random weights of that width)."""
    compressor = build_compressor(name, vlm.config.text_config.hidden_size)
    options = Options(max_visual_tokens=300, max_pages=4, max_frames=8, max_new_tokens=3,
                      compression=Compression(compressor, downsample=2))
    for source in (str(PDF), str(VIDEO)):
        result = ask(vlm, "What is shown?", source, options)
        assert result.stats["visual_downsample"] == 2 and result.stats["visual_compressor"] == name


def test_memory_bridge(vlm):
    """A bridge sized from the family's hidden size streams the real video; the segment shown is written like
    any video of the family (a block per temporal patch where the family times its patches)."""
    bridge = MemoryBridge(MemoryBridgeConfig(vlm.config.text_config.hidden_size, 8, cache_size=4))
    options = Options(max_visual_tokens=8 + 2 * 64, sample_fps=2.0, max_frames=32,
                      memory=MemoryOptions(bridge, max_segment_patches=2))
    encoded = encode(vlm, str(VIDEO), options)
    assert encoded.memory.state.segments_seen >= 2 and encoded.image_embeds[0].shape[0] == 8
    ids = model_inputs(vlm, encoded, "q")["input_ids"][0]
    video_patches = len(encoded.evidence) // vlm.vision.temporal_patch_size
    blocks = int((ids == vlm.config.vision_start_token_id).sum())  # the memory's block, then the segment's
    assert blocks == 1 + (video_patches if vlm.family_spec.timestamped_frames else 1)
    result = answer(vlm, encoded, "What happens at 0:03?", max_new_tokens=2)  # the clip lasts 10.8 s
    assert result.stats["memory_selection"] == "time"


def test_position_extension(vlm):
    """M-RoPE families: every method; Kimi (1D RoPE): the 1D methods, M-RoPE++ refused."""
    for method in ("linear", "ntk", "yarn", "mrope++"):
        model = load_vlm(vlm.name)
        if method == "mrope++" and not vlm.family_spec.mrope:
            with pytest.raises(ConfigError):
                apply_position_extension(model, method, 4.0)
            continue
        apply_position_extension(model, method, 4.0)
        assert position_extension(model).method == method and model.max_context == 4 * vlm.max_context
        result = ask(model, "What is shown?", str(PDF), Options(max_visual_tokens=200, max_pages=2, max_new_tokens=2))
        assert result.stats["position_extension"] == f"{method} x4"


def test_cli_model_directory(vlm, tmp_path, capsys):
    """`longvlm ask --model DIR` detects the family from config.json and answers like the preset."""
    vlm.save_pretrained(tmp_path / "model")
    assert json.loads((tmp_path / "model" / "config.json").read_text())["model_type"] == vlm.family
    args = ["ask", "--pdf", str(PDF), "-q", "What dataset is used?", "--max-pages", "3", "--max-visual-tokens", "200",
            "--max-new-tokens", "3", "--json"]
    assert main([*args, "--model", str(tmp_path / "model")]) == 0
    from_dir = json.loads(capsys.readouterr().out)
    assert main([*args, "--model", vlm.name]) == 0
    preset = json.loads(capsys.readouterr().out)
    assert from_dir["answer"] == preset["answer"] and from_dir["stats"]["context_length"] == preset["stats"][
        "context_length"]
    with torch.no_grad():
        assert load_vlm(tmp_path / "model").family == vlm.family
