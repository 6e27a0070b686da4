"""Memory bridge: shapes, gradients, bounded state and its round trip, pipeline integration, training."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from longvlm.memory.bridge import MemoryBridge, MemoryBridgeConfig, memory_grid
from longvlm.memory.state import CacheSpan, MemoryState
from longvlm.errors import ConfigError
from longvlm.options import Options
from longvlm.testing import FAMILY_PRESETS
from longvlm.vlm.vision import deepstack_layers

C = 64


@pytest.fixture()
def bridge():
    torch.manual_seed(0)
    return MemoryBridge(MemoryBridgeConfig(C, num_memory_tokens=8, cache_size=4))


def test_step_shapes_and_gradients_reach_every_parameter(bridge):
    memory, cache, spans = bridge.unroll([torch.randn(n, C) for n in (10, 3, 7, 12, 5, 9)])  # > cache_size
    assert memory.shape == (8, C) and cache.shape == (4, 8, C)
    covered = [i for span in spans for i in range(span.first_segment, span.last_segment + 1)]
    assert covered == list(range(6))  # merged entries still cover the segments in order
    memory.square().sum().backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in bridge.parameters())


def test_state_is_constant_beyond_the_cache(bridge):
    state = bridge.initial_state()
    sizes = []
    for k in range(12):
        bridge.advance(state, torch.randn(20, C), CacheSpan(10.0 * k, 10.0 * (k + 1), k, k, 1, 2 * k, 2 * k + 1))
        sizes.append(state.nbytes())
    assert state.cache.shape == (4, 8, C) and len(state.spans) == 4
    assert sizes[3:] == [sizes[3]] * 9  # flat once the cache is full
    spans = state.spans  # merged spans still tile the whole video in order
    assert spans[0].start_s == 0.0 and spans[-1].end_s == 120.0
    assert all(a.end_s == b.start_s for a, b in zip(spans, spans[1:]))
    assert sum(s.segments for s in spans) == 12 == state.segments_seen
    assert state.entry_at(55.0) is not None and spans[state.entry_at(55.0)].contains(55.0)
    for k in range(12, 40):
        bridge.advance(state, torch.randn(20, C), CacheSpan(10.0 * k, 10.0 * (k + 1), k, k, 1, 2 * k, 2 * k + 1))
    counts = [s.segments for s in state.spans]
    assert sum(counts) == 40 and max(counts) <= 2 * min(counts) + 2, counts  # balanced shares of the video


def test_state_and_bridge_round_trip(bridge, tmp_path):
    state = bridge.initial_state({"source": "x.mp4", "sample_fps": 1.0})
    for k in range(6):
        bridge.advance(state, torch.randn(5, C), CacheSpan(k, k + 1, k, k, 1, k, k))
    state.save(tmp_path / "state")
    loaded = MemoryState.load(tmp_path / "state")
    assert torch.equal(loaded.memory, state.memory) and torch.equal(loaded.cache, state.cache)
    assert loaded.spans == state.spans and loaded.meta == state.meta
    bridge.save_pretrained(tmp_path / "bridge")
    again = MemoryBridge.from_pretrained(tmp_path / "bridge")
    tokens = torch.randn(6, C)
    assert torch.equal(again.step(state.memory, tokens, state.cache), bridge.step(state.memory, tokens, state.cache))
    with pytest.raises(ConfigError, match="not a saved memory state"):
        MemoryState.load(tmp_path)


# -- retrieval order (VideoLLaMB parity) ---------------------------------------------------------------------

def videollamb_unroll(bridge, segments):
    """The segment loop of VideoLLaMB's RMTRTransformerProjector.forward, github bigai-nlco/VideoLLaMB (BIGAI-ML)
    commit a885b99, llava/model/multimodal_projector/rmt_r_transformer_projector.py:368-397, with our modules
    for its parts (`self.projector` -> `bridge.write`, `self.retrieval` -> `bridge.retrieve`):

        segment_output = self.projector(hidden_state, read_memories, ...)      # :376
        read_memories = segment_output[1]                                      # :390
        memory_cache.append(read_memories)                                     # :392
        read_memories = self.retrieval(read_memories,
                                       encoder_hidden_states=torch.cat(memory_cache, dim=1))   # :394-397

    Its cache is unbounded (a list): compared with a cache_size that holds every segment."""
    read_memories = bridge.memory_init
    memory_cache = []
    for hidden_state in segments:
        read_memories = bridge.write(read_memories, hidden_state)
        memory_cache.append(read_memories)
        read_memories = bridge.retrieve(read_memories, torch.stack(memory_cache))
    return read_memories, torch.stack(memory_cache)


def retrieve_first_unroll(bridge, segments):
    """The order bridges were trained with before `retrieval_order` (the shipped one): retrieval over the earlier
    memories only (none for the first segment), then the retrieved memory is cached."""
    memory, cache = bridge.memory_init, []
    for tokens in segments:
        written = bridge.write(memory, tokens)
        memory = bridge.retrieve(written, torch.stack(cache)) if cache else written
        cache.append(memory)
    return memory, torch.stack(cache)


@pytest.mark.parametrize("order,reference", [("cache_first", videollamb_unroll),
                                             ("retrieve_first", retrieve_first_unroll)])
def test_retrieval_order_matches_its_reference(order, reference):
    torch.manual_seed(3)
    bridge = MemoryBridge(MemoryBridgeConfig(C, num_memory_tokens=8, cache_size=16, retrieval_order=order))
    with torch.no_grad():
        bridge.retrieval_gate.fill_(0.8)
    segments = [torch.randn(n, C) for n in (6, 9, 4, 11, 7)]
    with torch.no_grad():
        expected_memory, expected_cache = reference(bridge, segments)
        memory, cache, _ = bridge.unroll(segments)
        torch.testing.assert_close(memory, expected_memory, atol=1e-6, rtol=1e-6)
        torch.testing.assert_close(cache, expected_cache, atol=1e-6, rtol=1e-6)
        state = bridge.initial_state()  # streaming = training
        for k, tokens in enumerate(segments):
            bridge.advance(state, tokens, CacheSpan(k, k + 1, k, k))
        torch.testing.assert_close(state.memory, expected_memory, atol=1e-6, rtol=1e-6)
        torch.testing.assert_close(state.cache, expected_cache, atol=1e-6, rtol=1e-6)
        other = videollamb_unroll if reference is retrieve_first_unroll else retrieve_first_unroll
        assert (other(bridge, segments)[0] - memory).abs().max() > 1e-3  # the two orders differ


def test_cache_first_streaming_equals_training_with_merging():
    torch.manual_seed(4)
    bridge = MemoryBridge(MemoryBridgeConfig(C, num_memory_tokens=8, cache_size=3))
    assert bridge.config.retrieval_order == "cache_first"  # new bridges: VideoLLaMB's order
    segments = [torch.randn(5, C) for _ in range(9)]
    with torch.no_grad():
        memory, cache, spans = bridge.unroll(segments)
        state = bridge.initial_state()
        for k, tokens in enumerate(segments):
            bridge.advance(state, tokens, CacheSpan(float(k), float(k + 1), k, k))
    assert state.cache.shape == cache.shape == (3, 8, C)
    torch.testing.assert_close(state.memory, memory)
    torch.testing.assert_close(state.cache, cache)
    covered = [(s.first_segment, s.last_segment) for s in spans]
    assert [(s.first_segment, s.last_segment) for s in state.spans] == covered


def test_saved_bridges_keep_the_order_they_were_trained_with(tmp_path):
    """A saved config without `retrieval_order` (written before it existed, e.g. the shipped bridge) loads as
    "retrieve_first" and computes exactly what it computed when it was trained; new saves record their order."""
    from longvlm.memory.bridge import CONFIG_NAME
    from longvlm.memory.loading import load_memory_bridge

    shipped = load_memory_bridge("small")
    assert shipped.config.retrieval_order == "retrieve_first"
    torch.manual_seed(5)
    old = MemoryBridge(MemoryBridgeConfig(C, num_memory_tokens=8, retrieval_order="retrieve_first"))
    old.save_pretrained(tmp_path)
    data = json.loads((tmp_path / CONFIG_NAME).read_text())
    assert data["retrieval_order"] == "retrieve_first"
    del data["retrieval_order"]  # as written before the option
    (tmp_path / CONFIG_NAME).write_text(json.dumps(data))
    loaded = MemoryBridge.from_pretrained(tmp_path)
    assert loaded.config.retrieval_order == "retrieve_first"
    segments = [torch.randn(4, C) for _ in range(4)]
    with torch.no_grad():
        torch.testing.assert_close(loaded.unroll(segments)[0], retrieve_first_unroll(old, segments)[0])
    with pytest.raises(ConfigError, match="retrieval_order"):
        MemoryBridgeConfig(C, retrieval_order="reference")


def test_bad_configs():
    with pytest.raises(ConfigError, match="divisible"):
        MemoryBridgeConfig(30, num_heads=4)
    with pytest.raises(ConfigError, match="positive"):
        MemoryBridgeConfig(32, cache_size=0)
    assert memory_grid(32) == (1, 8, 16) and memory_grid(7) == (1, 2, 14)


# -- pipeline -------------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def long_video(tmp_path_factory):
    from longvlm.testing import write_barcode_video

    return write_barcode_video(tmp_path_factory.mktemp("mem") / "ten_min.mp4", 600, fps=1, scene_seconds=60)


@pytest.fixture(scope="module", params=FAMILY_PRESETS)
def vlm(request):
    from longvlm.vlm.loading import load_vlm

    return load_vlm(request.param)


def _options(vlm):
    from longvlm.memory.streaming import MemoryOptions

    torch.manual_seed(0)
    return MemoryOptions(MemoryBridge(MemoryBridgeConfig(vlm.config.text_config.hidden_size, 8, cache_size=4)),
                         max_segment_patches=8)


def test_pipeline_memory_plus_selected_segment(vlm, long_video):
    from longvlm.pipeline.encode import encode_video
    from longvlm.pipeline.answer import answer, model_inputs
    from longvlm.vlm.positions import blocks_for_items, generation_position_ids

    encoded = encode_video(vlm, long_video, Options(max_visual_tokens=8 + 8 * 8, sample_fps=0.5, memory=_options(vlm)))
    state = encoded.memory.state
    assert state.segments_seen >= 10 and state.cache.shape[0] == 4  # 10 scenes of 60 s, cache bounded
    width = vlm.config.text_config.hidden_size * (1 + deepstack_layers(vlm))  # memory tokens: no DeepStack (zeros)
    assert encoded.visual_tokens <= 72 and encoded.image_embeds[0].shape == (8, width)
    assert encoded.evidence[-1].timestamp >= 590  # default: the last segment
    # positions: both blocks are ordinary items, transformers' ids equal longvlm's from the grids (M-RoPE
    # families; Kimi's positions are 1D)
    kwargs = model_inputs(vlm, encoded, "What is shown?")
    assert ("mm_token_type_ids" in kwargs) == vlm.family_spec.mrope
    if vlm.family_spec.mrope:
        tps = getattr(vlm.config.vision_config, "tokens_per_second", None) if vlm.family == "qwen2_5_vl" else None
        blocks = blocks_for_items(kwargs["image_grid_thw"], kwargs["video_grid_thw"], kwargs["mm_token_type_ids"],
                                  tokens_per_second=tps, second_per_grid_ts=kwargs.get("second_per_grid_ts"),
                                  timestamped_frames=vlm.family_spec.timestamped_frames)
        ours = generation_position_ids(kwargs["mm_token_type_ids"], blocks,
                                       vlm.config.vision_config.spatial_merge_size)
        theirs, _ = vlm.model.model.get_rope_index(
            kwargs["input_ids"], kwargs["mm_token_type_ids"], image_grid_thw=kwargs["image_grid_thw"],
            video_grid_thw=kwargs["video_grid_thw"],
            **({"second_per_grid_ts": kwargs["second_per_grid_ts"]} if tps else {}),
            attention_mask=kwargs["attention_mask"])
        assert torch.equal(ours[1:], theirs)
    # an early question gets the memory plus frames from its minute
    early = answer(vlm, encoded, "What is shown at minute 2?", max_new_tokens=2)
    assert early.stats["memory_selection"] == "time"
    times = [e.timestamp for e in early.evidence]
    assert min(times) <= 125 <= max(times) + 2 and max(times) < 590
    late = answer(vlm, encoded, "And at 9:55?", max_new_tokens=2)
    assert late.stats["memory_selection"] == "time" and late.evidence[-1].timestamp >= 590


def test_relevance_selection_zooms_into_a_long_entry(vlm, long_video):
    from longvlm.pipeline.encode import encode_video
    from longvlm.memory.streaming import MemoryOptions, for_question, zoom_span

    torch.manual_seed(0)
    bridge = MemoryBridge(MemoryBridgeConfig(vlm.config.text_config.hidden_size, 8, cache_size=4, relevance_dim=8))
    options = MemoryOptions(bridge, max_segment_patches=4, select="relevance")
    encoded = encode_video(vlm, long_video, Options(max_visual_tokens=8 + 4 * 8, sample_fps=0.5, memory=options))
    state = encoded.memory.state
    fit = state.meta["segment_budget"] // state.meta["tokens_per_patch"]
    entry = max(range(len(state.spans)), key=lambda k: state.spans[k].last_patch - state.spans[k].first_patch)
    wide = state.spans[entry]
    assert wide.last_patch - wide.first_patch + 1 > fit  # 150 patches in 4 entries, 4 patches shown
    query = torch.randn(vlm.config.text_config.hidden_size)
    narrow = zoom_span(vlm, encoded.memory, state, entry, query)
    assert wide.first_patch <= narrow.first_patch <= narrow.last_patch <= wide.last_patch
    assert narrow.last_patch - narrow.first_patch + 1 < wide.last_patch - wide.first_patch + 1
    assert wide.start_s <= narrow.start_s < narrow.end_s <= wide.end_s
    before = (state.cache.clone(), list(state.spans), dict(state.meta))
    chosen = for_question(vlm, encoded, "What is shown?")
    assert chosen.stats["memory_selection"] == "relevance"
    assert torch.equal(state.cache, before[0]) and state.spans == before[1] and state.meta == before[2]  # untouched
    assert len(chosen.evidence) <= 2 * fit


def test_memory_refuses_other_options(vlm, long_video):
    from longvlm.options import Compression, Options
    from longvlm.pipeline.ask import ask

    with pytest.raises(ConfigError, match="memory bridge"):  # what encode_video used to check itself
        Options(memory=_options(vlm), compression=Compression(downsample=2))
    with pytest.raises(ConfigError, match="memory bridge"):
        Options(memory=_options(vlm), video_resolution="hybrid")
    with pytest.raises(ConfigError, match="video only"):
        ask(vlm, "q", ["x.png"], Options(memory=_options(vlm)))


def test_bridge_is_refused_by_a_model_it_was_not_trained_with(long_video):
    from longvlm.memory.bridge import check_bridge_model
    from longvlm.memory.training import build_bridge
    from longvlm.pipeline.encode import encode_video
    from longvlm.vlm.loading import build_tiny
    from longvlm.memory.streaming import MemoryOptions

    trained_on, other = build_tiny("tiny", seed=0), build_tiny("tiny", seed=1)
    bridge = build_bridge(trained_on, MemoryBridgeConfig(num_memory_tokens=8))
    assert len(bridge.config.model_signature) == 16
    check_bridge_model(bridge, trained_on.model)
    check_bridge_model(bridge, build_tiny("tiny", seed=0, dtype=torch.bfloat16).model)  # same model, cast
    with pytest.raises(ConfigError, match="trained with another model"):
        encode_video(other, long_video, Options(max_visual_tokens=72, sample_fps=0.1, memory=MemoryOptions(bridge)))
    unrecorded = MemoryBridge(MemoryBridgeConfig(other.config.text_config.hidden_size, 8))
    check_bridge_model(unrecorded, other.model)  # bridges saved without a signature are not checked


def test_question_times():
    from longvlm.memory.streaming import question_seconds

    assert question_seconds("What happens in minute 5?", 3600) == 300
    assert question_seconds("what is at 12:30", 3600) == 750
    assert question_seconds("after 90 s?", 3600) == 90
    assert question_seconds("what colour is the car?", 3600) is None


# -- training -------------------------------------------------------------------------------------------------

def test_bridge_only_training_step():
    from longvlm.datasets.needles import video_needle
    from longvlm.memory.training import build_bridge, memory_example_loss
    from longvlm.vlm.loading import load_vlm

    vlm = load_vlm("tiny")
    for p in vlm.model.parameters():
        p.requires_grad_(False)
    config = MemoryBridgeConfig(num_memory_tokens=8)  # no hidden size: the model's
    torch.manual_seed(0)
    bridge = build_bridge(vlm, config)
    example = video_needle(np.random.default_rng(0), 16)
    optimizer = torch.optim.AdamW(bridge.parameters(), lr=3e-3)
    losses = []
    for _ in range(4):
        loss, sizes = memory_example_loss(vlm, vlm.model, bridge, example, max_segment_patches=3, alpha=1.0)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(float(loss.detach()))
    assert losses[-1] < losses[0]
    assert sizes["tokens"] > config.num_memory_tokens and 0 < sizes["answer_tokens"] < sizes["tokens"]
    assert bridge.config.num_memory_tokens == 8 and bridge.config.hidden_size == vlm.config.text_config.hidden_size
    assert config.hidden_size is None and not config.model_signature  # the caller's config is left as it was
    assert all(p.grad is None for p in vlm.model.parameters())  # only the bridge learns
    assert all(p.grad is not None for p in bridge.parameters())
    with pytest.raises(ConfigError, match="hidden_size"):
        MemoryBridge(config)


def test_relevance_scores_match_their_formulas():
    torch.manual_seed(0)
    cache, query = torch.randn(5, 8, C), torch.randn(C)
    plain = MemoryBridge(MemoryBridgeConfig(C, num_memory_tokens=8))
    expected = torch.stack([torch.nn.functional.cosine_similarity(e.mean(0), query, dim=0) for e in cache])
    assert torch.allclose(plain.relevance_scores(cache, query), expected, atol=1e-6)
    learned = MemoryBridge(MemoryBridgeConfig(C, num_memory_tokens=8, relevance_dim=16))
    norm = torch.nn.functional.layer_norm
    w = learned.relevance_norm
    q = learned.relevance_query(norm(query, (C,), w.weight, w.bias))
    with torch.no_grad():
        expected = torch.tensor([max(float(learned.relevance_key(norm(token, (C,), w.weight, w.bias)) @ q)
                                     for token in entry) for entry in cache]) / 4.0
        assert torch.allclose(learned.relevance_scores(cache, query), expected, atol=1e-5)
    state = learned.initial_state()
    assert learned.relevance(state, query).shape == (0,)


def test_selection_loss_trains_the_relevance_towards_the_needle_entry():
    from longvlm.datasets.needles import video_needle
    from longvlm.memory.training import build_bridge, memory_example_loss
    from longvlm.vlm.loading import load_vlm

    vlm = load_vlm("tiny")
    for p in vlm.model.parameters():
        p.requires_grad_(False)
    torch.manual_seed(0)
    bridge = build_bridge(vlm, MemoryBridgeConfig(num_memory_tokens=8, relevance_dim=16))
    assert bridge.config.relevance_dim == 16
    example = video_needle(np.random.default_rng(1), 24, depth=0.3)
    segments = {"max_segment_patches": 2, "alpha": 1.0}

    def losses():
        with_selection, _ = memory_example_loss(vlm, vlm.model, bridge, example, **segments,
                                                selection_loss_weight=1.0)
        answer_only, _ = memory_example_loss(vlm, vlm.model, bridge, example, **segments)
        return with_selection, answer_only

    with_selection, answer_only = losses()
    assert float(with_selection.detach()) > float(answer_only.detach())  # + the selection cross-entropy (> 0)
    with_selection.backward()
    assert bridge.relevance_query.weight.grad.abs().sum() > 0 and bridge.relevance_key.weight.grad.abs().sum() > 0
    optimizer = torch.optim.AdamW(bridge.parameters(), lr=1e-2)
    gaps = []
    for _ in range(25):
        loss, answer_only = losses()
        gaps.append(float(loss.detach() - answer_only.detach()))
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    assert gaps[-1] < 0.5 * gaps[0], gaps  # the needle's entry gets the top score on this example
    with pytest.raises(ConfigError, match="relevance_dim"):
        from longvlm.training.config import config_from_dict

        config_from_dict({"memory_bridge": {"selection_loss_weight": 1.0},
                          "data": {"sources": {"video_needle/color": 1.0}}})


def test_memory_bridge_config_section(tmp_path):
    from longvlm.memory.bridge import MemoryBridge
    from longvlm.training.config import load_config
    from longvlm.training.trainer import train

    config = load_config("configs/memory_bridge_smoke.yaml", {"output_dir": str(tmp_path),
                                                              "stages": [{"name": "b", "max_length": 512, "steps": 2}]})
    result = train(config)
    assert result.steps == 2 and np.isfinite(result.final_loss)
    saved = MemoryBridge.from_pretrained(tmp_path / "memory_bridge")
    assert saved.config.num_memory_tokens == 8
    log = [json.loads(line) for line in open(tmp_path / "training_log.jsonl") if '"loss"' in line]
    assert log[-1]["tokens"] > 0 and log[-1]["answer_tokens"] > 0  # what the LLM saw through the bridge
    with pytest.raises(ConfigError, match="unknown key"):
        load_config("configs/memory_bridge_smoke.yaml", {"memory_bridge": {"tokens": 8}})
    with pytest.raises(ConfigError, match=r"memory_bridge: \['cache_size'\] must be positive integers"):
        load_config("configs/memory_bridge_smoke.yaml", {"memory_bridge": {"cache_size": 0}})
    for bad in ({"max_segment_patches": 0}, {"relevance_dim": -1}, {"num_heads": "4"}, {"dropout": 1.0},
                {"selection_loss_weight": -1.0}):
        with pytest.raises(ConfigError, match="config.memory_bridge"):
            load_config("configs/memory_bridge_smoke.yaml", {"memory_bridge": bad})
    for from_model in ("hidden_size", "model_signature"):  # set from the trained model, not the config
        with pytest.raises(ConfigError, match="unknown key"):
            load_config("configs/memory_bridge_smoke.yaml", {"memory_bridge": {from_model: 64}})
    import yaml

    from longvlm.training.config import config_from_dict, config_to_dict

    with open("configs/memory_bridge_smoke.yaml") as fh:
        data = yaml.safe_load(fh)
    # the section: the bridge's MemoryBridgeConfig (hidden size left to the model) + the training-only fields
    section = config_from_dict(data).memory_bridge
    assert section.bridge == MemoryBridgeConfig(num_memory_tokens=8, num_layers=1, num_heads=4, cache_size=4)
    assert (section.max_segment_patches, section.alpha, section.init) == (3, 1.0, None)
    written = json.loads((tmp_path / "train_config.json").read_text())  # the run's record, in the YAML format
    assert written["memory_bridge"] == {**data["memory_bridge"], "ffn_mult": 2, "dropout": 0.0, "relevance_dim": 0,
                                        "retrieval_order": "cache_first", "selection_loss_weight": 0.0, "init": None}
    legacy = config_from_dict({**data, "memory_bridge": {**data["memory_bridge"], "retrieval_order": "retrieve_first"}})
    assert legacy.memory_bridge.bridge.retrieval_order == "retrieve_first"  # the order the shipped bridge trained with
    assert config_from_dict(config_to_dict(config)) == config
    data["data"]["sources"] = {"text_passkey": 1.0}
    with pytest.raises(ConfigError, match="video_needle"):
        config_from_dict(data)


def test_comparison_script_runs_on_tiny_model(load_script):
    module = load_script("scripts/compare_memory_bridge.py")
    result = module.main(["--model", "tiny", "--samples", "1", "--frames", "64", "--budget", "160",
                          "--segment-patches", "4"])
    assert set(result["accuracy"]) == {"uniform", "memory_bridge"}
    assert all(0.0 <= v <= 1.0 for v in result["accuracy"].values())
    assert result["select"] == "relevance"  # the default; --select last shows the last segment instead
    last = module.main(["--model", "tiny", "--samples", "1", "--frames", "64", "--budget", "160",
                        "--segment-patches", "4", "--select", "last"])
    assert last["select"] == "last" and set(last["accuracy"]) == {"uniform", "memory_bridge"}
    assert all(0.0 <= v <= 1.0 for v in last["needle_frame_shown"].values())


def test_shipped_bridge_belongs_to_the_shipped_model():
    from longvlm.memory.bridge import check_bridge_model
    from longvlm.options import build_options
    from longvlm.vlm.loading import load_vlm

    vlm = load_vlm("small")
    options = build_options(vlm, memory_bridge="small", memory_select="auto").memory
    check_bridge_model(options.bridge, vlm.model)  # trained on the shipped model: accepted
    assert options.bridge.config.relevance_dim > 0  # with a trained relevance score
