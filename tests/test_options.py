"""One path for every caller (issue 22): `Options`, `build_options`, `encode`'s kind detection, and the three
bugs the old paths had: a `.mpg` through the lmms-eval adapter answered without its video, a selector given to
the PDF encoder silently ignored (and a press that had to be passed twice), and the CLI and the demo building
different compressions from the same choices."""

from __future__ import annotations

import argparse

import av
import numpy as np
import pytest

from longvlm.cli import _options, build_parser
from longvlm.compression import VISUAL_COMPRESSORS, AvgPoolCompressor, BilinearCompressor
from longvlm.demo.settings import DemoSettings
from longvlm.errors import ConfigError, InputError
from longvlm.ingest.kinds import SUFFIXES, detect_kind
from longvlm.options import DOWNSAMPLE_CHOICES, Compression, Options, build_compression, build_options
from longvlm.pipeline.answer import answer
from longvlm.pipeline.encode import encode
from longvlm.presses import MERGE_METHODS, NO_MERGE, PRESSES
from longvlm.retrieval.ranking import QuestionSelector
from longvlm.testing import write_synthetic_pdf
from longvlm.vlm.loading import load_vlm


@pytest.fixture(scope="module")
def tiny():
    return load_vlm("tiny")


@pytest.fixture(scope="module")
def mpg_video(tmp_path_factory) -> str:
    """A 2-second MPEG-1 program stream (what `.mpg` files hold), frames getting brighter."""
    path = str(tmp_path_factory.mktemp("mpg") / "clip.mpg")
    with av.open(path, "w", format="mpeg") as container:
        stream = container.add_stream("mpeg1video", rate=25)
        stream.width, stream.height, stream.pix_fmt = 112, 84, "yuv420p"
        for i in range(50):
            frame = av.VideoFrame.from_ndarray(np.full((84, 112, 3), 4 * i, np.uint8), format="rgb24")
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path


@pytest.fixture(scope="module")
def pdf(tmp_path_factory) -> str:
    path = tmp_path_factory.mktemp("pdf") / "doc.pdf"
    write_synthetic_pdf(path, 6)
    return str(path)


def test_kind_is_detected_from_content_then_suffix(tmp_path, mpg_video, pdf):
    assert detect_kind(mpg_video) == "video" and detect_kind(pdf) == "pdf"
    unnamed = tmp_path / "no_suffix"
    unnamed.write_bytes(open(mpg_video, "rb").read())
    assert detect_kind(unnamed) == "video"  # the content decides
    renamed = tmp_path / "really_a_pdf.mp4"
    renamed.write_bytes(open(pdf, "rb").read())
    assert detect_kind(renamed) == "pdf"
    text = tmp_path / "notes.txt"
    text.write_text("hello")
    with pytest.raises(InputError, match="notes.txt: not a PDF, a video or an image"):
        detect_kind(text)
    with pytest.raises(InputError, match="no such file"):
        detect_kind(tmp_path / "missing.mpg")
    assert all(s.startswith(".") and s == s.lower() for suffixes in SUFFIXES.values() for s in suffixes)


def test_an_mpg_through_the_lmms_adapter_is_answered_with_its_video(tiny, mpg_video, monkeypatch):
    """Bug: the adapter had its own suffix list without .mpg, so the video was dropped and the model answered
    from the prompt alone."""
    from longvlm.eval import lmms_adapter

    seen = []
    real = lmms_adapter.answer
    monkeypatch.setattr(lmms_adapter, "answer", lambda vlm, encoded, *a, **k: seen.append(encoded) or real(
        vlm, encoded, *a, **k))
    text = lmms_adapter.answer_request(tiny, "What happens?", [mpg_video], Options(max_new_tokens=2))
    assert isinstance(text, str)
    assert seen[0].kind == "video" and seen[0].visual_tokens > 0 and seen[0].stats["frames_sampled"] > 1


def test_a_selector_is_applied_by_encode_or_refused_never_ignored(tiny, pdf):
    """Bug: `encode_pdf(compression=Compression(selector=...))` ignored the selector, and the press had to be
    passed to `answer()` again. Now `encode` ranks with the question, or refuses without one, and the encoded
    input carries its options so `answer()` applies the same press."""
    options = Options(max_visual_tokens=400, max_new_tokens=2, compression=Compression(
        selector=QuestionSelector(False), native_items=1, kv_press=PRESSES["snapkv"](0.5)))
    with pytest.raises(ConfigError, match="pass question="):
        encode(tiny, pdf, options)
    encoded = encode(tiny, pdf, options, question="What is the secret code of page 4?")
    assert encoded.stats["selection_top"] == ["p.4"] and encoded.options is options
    result = answer(tiny, encoded, "What is the secret code of page 4?", max_new_tokens=2)
    assert result.stats["kv_press"].startswith("SnapKVPress") and result.stats["kv_tokens_kept"] < \
        result.stats["kv_tokens_full"]


def _cli_compression(argv: list[str], vlm) -> Compression | None:
    args = build_parser().parse_args(["ask", "--pdf", "x.pdf", "-q", "q", *argv])
    return _options(args, vlm).compression


def _same(a: Compression | None, b: Compression | None) -> bool:
    if a is None or b is None:
        return a is b
    return (type(a.visual_compressor()), a.downsample, repr(a.kv_press), a.native_items) == \
        (type(b.visual_compressor()), b.downsample, repr(b.kv_press), b.native_items)


@pytest.mark.parametrize("compressor", ["none", *VISUAL_COMPRESSORS])
@pytest.mark.parametrize("downsample", DOWNSAMPLE_CHOICES)
def test_cli_and_demo_build_the_same_compression(tiny, compressor, downsample):
    """Bug: the demo forced factor 1 when no compressor was named, the CLI average-pooled. One builder now."""
    argv = ["--downsample", downsample, "--kv-press", "snapkv", "--kv-budget", "0.5"]
    if compressor != "none":
        argv += ["--compressor", compressor]
    settings = DemoSettings(compressor=compressor, downsample=downsample, kv_press="snapkv", kv_budget=0.5)
    if compressor != "none" and downsample == "1":  # a compressor without a factor is refused by both
        with pytest.raises(ConfigError, match="needs a factor"):
            _cli_compression(argv, tiny)
        with pytest.raises(ConfigError, match="needs a factor"):
            settings.compression(tiny)
        return
    cli, demo = _cli_compression(argv, tiny), settings.compression(tiny)
    assert _same(cli, demo)
    expected = {"none": AvgPoolCompressor, "avgpool": AvgPoolCompressor, "bilinear": BilinearCompressor}
    if compressor in expected:
        assert type(cli.visual_compressor()) is expected[compressor]


def test_options_are_frozen_and_validated():
    options = Options()
    with pytest.raises(AttributeError):
        options.max_visual_tokens = 5  # frozen
    assert options.replace(max_frames=8).max_frames == 8 and options.max_frames is None
    for bad in (dict(max_visual_tokens=0), dict(sample_fps=float("nan")), dict(dpi=-1), dict(route="fast"),
                dict(video_resolution="4k"), dict(max_pages=True)):
        with pytest.raises(ConfigError):
            Options(**bad)
    assert build_compression() is None
    with pytest.raises(ConfigError, match="give --kv-press too"):
        build_compression(kv_budget=0.5)
    with pytest.raises(ConfigError, match="unknown KV press"):
        build_options(kv_press="snapkv2")


def test_every_registry_name_is_reachable_from_the_cli_and_the_demo():
    """Registries are the only source of names: each press, compressor, rope method, memory mode, route,
    resolution and NIAH suite is a CLI choice and (where the demo has the control) a demo choice."""
    from longvlm.demo.features import COMPRESSOR_CHOICES, PRESS_CHOICES, ROPE_CHOICES
    from longvlm.eval.niah import SUITES
    from longvlm.memory.streaming import SELECT_MODES
    from longvlm.planning.planner import RESOLUTIONS
    from longvlm.routes import ROUTES
    from longvlm.vlm.rope import METHODS

    parser = build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    ask_choices = {a.dest: tuple(a.choices or ()) for a in sub.choices["ask"]._actions}
    evaluate = next(a for a in sub.choices["eval"]._actions if isinstance(a, argparse._SubParsersAction))
    niah_choices = {a.dest: tuple(a.choices or ()) for a in evaluate.choices["niah"]._actions}
    assert set(ask_choices["kv_press"]) == set(PRESSES)
    assert set(ask_choices["kv_merge"]) == {NO_MERGE, *MERGE_METHODS}
    assert set(ask_choices["compressor"]) == set(VISUAL_COMPRESSORS)
    assert set(ask_choices["rope_method"]) == set(METHODS)
    assert set(ask_choices["memory_select"]) == set(SELECT_MODES)
    assert set(ask_choices["route"]) == set(ROUTES)
    assert set(ask_choices["video_resolution"]) == set(RESOLUTIONS)
    assert set(ask_choices["downsample"]) == set(DOWNSAMPLE_CHOICES)
    assert set(niah_choices["suite"]) == set(SUITES)
    assert set(COMPRESSOR_CHOICES) == {"none", *VISUAL_COMPRESSORS}
    assert set(PRESS_CHOICES) == {"none", *PRESSES} and set(ROPE_CHOICES) == {"none", *METHODS}
    for name in VISUAL_COMPRESSORS:  # each builds from its name alone (oryx: with the model's hidden size)
        assert build_compression(compressor=name, downsample="2", hidden_size=64).visual_compressor().name == name


def test_the_shipped_oryx_is_used_for_the_small_model_by_cli_and_demo():
    small = load_vlm("small")
    cli = _cli_compression(["--downsample", "2", "--compressor", "oryx"], small)
    demo = DemoSettings(compressor="oryx", downsample="2").compression(small)
    for compression in (cli, demo):
        assert float(compression.visual.gate) > 0  # the trained weights, not the untrained start (gate 0)
    untrained = _cli_compression(["--downsample", "2", "--compressor", "oryx"], load_vlm("tiny"))
    assert float(untrained.visual.gate) == 0.0
