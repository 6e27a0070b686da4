"""KV presses on tiny Qwen2-VL and Qwen2.5-VL models (real transformers classes): identity at 0% pruning,
exact budgets, text prior, original positions after pruning, scores equal to the model's own attention."""

import pytest
import torch
from compression_helpers import MIXED_ROWS, batch_inputs, sharp_vlm
from transformers import DynamicCache

from longvlm.options import Compression, Options
from longvlm.presses import (H2OPress, KVBudget, LookMPress, RandomPress, SnapKVPress, StreamingLLMPress, build_press,
                             generate_pruned)
from longvlm.presses.decode import decode_position_ids, prompt_position_ids
from longvlm.presses.base import ScorerPress, attention_modules, token_types_from_ids
from longvlm.presses.scoring import attention_probs, is_latent_attention
from longvlm.demo.stats import kv_values_per_token
from longvlm.errors import ConfigError
from longvlm.vlm.prompt import TEXT
from longvlm.testing import FAMILY_PRESETS

NEW_TOKENS = 10


@pytest.fixture(scope="module", params=FAMILY_PRESETS)
def vlm(request):
    return sharp_vlm(request.param)


@pytest.fixture(scope="module")
def batch(vlm):
    return batch_inputs(vlm, MIXED_ROWS)


def attention_layers(vlm) -> int:
    """Text layers with a KV cache: all of them, except Qwen3.5's linear-attention layers."""
    types = getattr(vlm.config.text_config, "layer_types", None)
    return vlm.config.text_config.num_hidden_layers if types is None else types.count("full_attention")


def plain_generate(vlm, inputs, max_new_tokens=NEW_TOKENS):
    out = vlm.model.generate(**inputs, max_new_tokens=max_new_tokens, do_sample=False)
    return out[:, inputs["input_ids"].shape[1]:]


def all_presses(budget, **kw):
    return [LookMPress(budget, window=8, **kw), LookMPress(budget, window=8, merge=None, **kw),
            SnapKVPress(budget, window=8, **kw), H2OPress(budget, window=8, query_chunk=64, **kw),
            StreamingLLMPress(budget, **kw), RandomPress(budget, **kw)]


def test_prompt_positions_match_transformers(vlm, batch):
    """Our prompt positions are what generate() builds (private transformers API: fails loudly if it changes)."""
    kwargs = {k: v for k, v in batch.items() if k != "input_ids"}
    expected = vlm.model._prepare_position_ids_for_generation(batch["input_ids"], dict(kwargs))
    assert torch.equal(prompt_position_ids(vlm.model, batch), expected)


@pytest.mark.parametrize("press_name", ["lookm", "streaming"])
def test_no_pruning_is_token_identical_to_generate(vlm, batch, press_name):
    """Budget 100%: the padded batch decodes exactly like plain generate (and so does no press)."""
    reference = plain_generate(vlm, batch)
    assert len(set(reference.flatten().tolist())) > 3  # the tiny model's output depends on its context
    result = generate_pruned(vlm.model, batch, build_press(press_name, 1.0), max_new_tokens=NEW_TOKENS)
    assert torch.equal(result.tokens, reference)
    assert torch.equal(result.state.keep_counts, result.state.real_lengths)
    assert torch.equal(generate_pruned(vlm.model, batch, None, max_new_tokens=NEW_TOKENS).tokens, reference)


def test_no_pruning_under_generate_is_identical(vlm):
    """kvpress-style use: `with press(model): model.generate(...)`, one row."""
    single = batch_inputs(vlm, MIXED_ROWS[:1])
    reference = plain_generate(vlm, single)
    with LookMPress(1.0)(vlm.model) as state:
        pressed = plain_generate(vlm, single)
    assert state.layers_pruned == len(attention_modules(vlm.model)) == attention_layers(vlm)
    assert torch.equal(pressed, reference)


@pytest.mark.parametrize("budget", [0.5, 0.05, 7])
def test_budgets_are_exact(vlm, batch, budget):
    lengths = batch["attention_mask"].sum(-1)
    if isinstance(budget, float):
        expected = torch.floor(lengths.double() * budget + 0.5).long()
    else:
        expected = torch.clamp(torch.full_like(lengths, budget), max=lengths)
    layers = attention_layers(vlm)
    for press in all_presses(budget, record_indices=True):
        result = generate_pruned(vlm.model, batch, press, max_new_tokens=2)
        state = result.state
        assert torch.equal(state.keep_counts, expected), press
        assert state.cache_length == int(expected.max()) and state.layers_pruned == layers
        assert torch.equal(state.slot_mask.sum(-1), expected)
        # prefill cache: K slots per softmax-attention layer, keys + values (MLA: latent + rotary key), 4 bytes each
        per_token = kv_values_per_token(vlm.config.text_config)
        assert result.cache_bytes == layers * len(lengths) * state.cache_length * per_token * 4
        for layer, kept in state.kept_indices.items():
            for row in range(len(lengths)):
                used = kept[row][:, state.slot_mask[row]]
                assert (kept[row][:, ~state.slot_mask[row]] == -1).all()
                padding = batch["attention_mask"].shape[1] - int(lengths[row])
                assert (used >= padding).all(), "a padding token was kept"
                for head in used:
                    assert len(set(head.tolist())) == len(head) and head.tolist() == sorted(head.tolist())


def test_lookm_text_prior(vlm, batch):
    """With room for them, every text token and the recent window are kept; visual tokens fill the rest."""
    types, mask = token_types_from_ids(batch["input_ids"], vlm.config), batch["attention_mask"].bool()
    assert "mm_token_type_ids" not in batch or torch.equal(types, batch["mm_token_type_ids"].long())
    text = ((types == TEXT) & mask).sum(-1)
    budget = int(text.max()) + 12
    press = LookMPress(budget, window=8, record_indices=True)
    result = generate_pruned(vlm.model, batch, press, max_new_tokens=1)
    length = mask.shape[1]
    for kept in result.state.kept_indices.values():
        for row in range(mask.shape[0]):
            want = set(torch.nonzero((types[row] == TEXT) & mask[row]).flatten().tolist()) | set(
                range(length - 8, length))
            for head in kept[row]:
                chosen = set(head[head >= 0].tolist())
                assert want <= chosen
                assert len(chosen) == min(budget, int(mask[row].sum()))


def _manual_decode(vlm, batch, tokens, cache_mask, positions, cache, shift=None):
    """Feed `tokens` [B, T] one by one; return the logits [B, T-1, V] predicting tokens 1..T-1."""
    logits = []
    for step in range(tokens.shape[1] - 1):
        cache_mask = torch.cat([cache_mask, cache_mask.new_ones(cache_mask.shape[0], 1)], dim=1)
        step_positions = decode_position_ids(positions, step)
        if shift is not None:  # 3D positions [4, B, 1], or 1D [B, 1]
            step_positions = step_positions - (shift[:, None] if step_positions.ndim == 2 else shift[None, :, None])
        out = vlm.model(input_ids=tokens[:, step:step + 1], attention_mask=cache_mask, position_ids=step_positions,
                        cache=cache, use_cache=True)
        logits.append(out.logits[:, -1])
    return torch.stack(logits, dim=1)


def test_decoding_after_pruning_uses_original_positions(vlm, batch):
    """Pruning to a subset S equals keeping the full cache and masking out everything outside S, provided the
    decode positions are the original ones (StreamingLLM keeps the same tokens in every head). Positions taken
    from the shorter cache (shifted by the pruned count) give different logits."""
    press = StreamingLLMPress(0.3, record_indices=True)
    result = generate_pruned(vlm.model, batch, press, max_new_tokens=NEW_TOKENS)
    state = result.state
    positions = prompt_position_ids(vlm.model, batch)
    # pruned path, logits step by step
    with press(vlm.model):
        cache = DynamicCache(config=vlm.model.config)
        vlm.model(**batch, position_ids=positions, cache=cache, use_cache=True)
        slot_mask = press.state.slot_mask.long()
        pruned_logits = _manual_decode(vlm, batch, result.tokens, slot_mask, positions, cache)
    # reference: full cache, attention mask zero outside the kept set
    kept = state.kept_indices[min(state.kept_indices)][:, 0]  # the first layer with a KV cache
    reference_mask = torch.zeros_like(batch["attention_mask"])
    for row in range(kept.shape[0]):
        reference_mask[row, kept[row][kept[row] >= 0]] = 1
    cache = DynamicCache(config=vlm.model.config)
    vlm.model(**batch, position_ids=positions, cache=cache, use_cache=True)
    full_logits = _manual_decode(vlm, batch, result.tokens, reference_mask, positions, cache)
    torch.testing.assert_close(pruned_logits, full_logits, atol=1e-4, rtol=1e-4)
    assert torch.equal(pruned_logits.argmax(-1), result.tokens[:, 1:])
    # the same pruned cache decoded with cache-length positions is measurably different
    with press(vlm.model):
        cache = DynamicCache(config=vlm.model.config)
        vlm.model(**batch, position_ids=positions, cache=cache, use_cache=True)
        wrong = _manual_decode(vlm, batch, result.tokens, press.state.slot_mask.long(), positions, cache,
                               shift=press.state.pruned)
    assert (wrong - full_logits).abs().max() > 0.1


def test_generate_under_press_matches_generate_pruned(vlm):
    """One row, 30% LOOK-M: transformers' own generate() (which tracks positions itself) and generate_pruned
    produce the same tokens on the same pruned cache."""
    single = batch_inputs(vlm, MIXED_ROWS[:1], seed=3)
    ours = generate_pruned(vlm.model, single, LookMPress(0.3, window=8), max_new_tokens=NEW_TOKENS).tokens
    with LookMPress(0.3, window=8)(vlm.model) as state:
        theirs = plain_generate(vlm, single)
    assert state.cache_length < single["input_ids"].shape[1]
    assert torch.equal(ours, theirs)
    assert not torch.equal(ours, plain_generate(vlm, single))  # pruning 70% did change the answer


class _CaptureProbs(ScorerPress):
    """Test press: records the recomputed attention of the last queries per layer, keeps everything."""

    name = "capture"

    def __init__(self, window):
        super().__init__(1.0)
        self.window, self.probs = window, {}

    def priority(self, view):
        length = view.length
        self.probs[view.module.layer_idx] = attention_probs(view, length - self.window, length)
        return torch.zeros(view.keys.shape[:3])


def test_recomputed_scores_equal_eager_attention(vlm, batch):
    """The SnapKV-style recomputation (from hidden states, under SDPA) equals the attention weights the model
    itself computes with eager attention."""
    window = 6
    capture = _CaptureProbs(window)
    with capture(vlm.model):
        generate_pruned(vlm.model, batch, capture, max_new_tokens=1)
    vlm.model.set_attn_implementation("eager")
    try:
        positions = prompt_position_ids(vlm.model, batch)
        with torch.no_grad():
            eager = vlm.model(**batch, position_ids=positions, output_attentions=True).attentions
    finally:
        vlm.model.set_attn_implementation("sdpa")
    heads = vlm.config.text_config.num_attention_heads
    # cache heads: the config's KV heads, or one latent for multi-head latent attention (Kimi)
    kv_heads = 1 if is_latent_attention(attention_modules(vlm.model)[0]) else vlm.config.text_config.num_key_value_heads
    order = [module.layer_idx for module in attention_modules(vlm.model)]  # eager returns those layers only
    assert len(eager) == len(order) == len(capture.probs)
    for layer, probs in capture.probs.items():
        ours = probs.reshape(probs.shape[0], heads, window, -1)  # [B, Hkv, G, w, L] -> [B, H, w, L]
        theirs = eager[order.index(layer)][:, :, -window:].float()
        assert heads // kv_heads == probs.shape[2]
        torch.testing.assert_close(ours, theirs, atol=1e-5, rtol=1e-4)


def test_press_guards(vlm, batch):
    hooks_before = [len(m._forward_hooks) for m in attention_modules(vlm.model)]
    # right padding is refused
    flipped = {k: (v.flip(-1) if k in ("input_ids", "attention_mask", "mm_token_type_ids") else v)
               for k, v in batch.items()}
    with pytest.raises(ConfigError, match="left-padded"):
        generate_pruned(vlm.model, flipped, LookMPress(0.5), max_new_tokens=2)
    # generate() cannot decode a padded batch whose rows were pruned by different amounts
    with pytest.raises(ConfigError, match="generate_pruned"):
        with LookMPress(0.5)(vlm.model):
            plain_generate(vlm, batch, max_new_tokens=3)
    # chunked prefill would prune a partial prompt
    single = batch_inputs(vlm, MIXED_ROWS[:1])
    with pytest.raises(ConfigError, match="one prefill pass"):
        with LookMPress(0.5)(vlm.model):
            vlm.model.generate(**single, max_new_tokens=2, do_sample=False, prefill_chunk_size=16)
    # decoding without positions would use the (wrong) cache-length positions
    with LookMPress(0.5)(vlm.model):
        cache = DynamicCache(config=vlm.model.config)
        positions = prompt_position_ids(vlm.model, single)
        vlm.model(**single, position_ids=positions, cache=cache, use_cache=True)
        with pytest.raises(ConfigError, match="position_ids"):
            vlm.model(input_ids=single["input_ids"][:, -1:], cache=cache, use_cache=True)
    # hooks are removed on exit
    assert [len(m._forward_hooks) for m in attention_modules(vlm.model)] == hooks_before
    with pytest.raises(ConfigError):
        KVBudget.parse(1.5)
    with pytest.raises(ConfigError):
        build_press("nope", 0.5)


def test_explicit_positions_hybrid_video(vlm, short_video):
    """Inputs with explicit position_ids (a hybrid-resolution video, positions computed by longvlm): the
    press path keeps them and decodes like generate() at 100%."""
    from longvlm.planning.hybrid import HybridConfig
    from longvlm.pipeline.encode import encode_video
    from longvlm.pipeline.answer import model_inputs

    encoded = encode_video(vlm, short_video, Options(max_visual_tokens=400, sample_fps=1.0, video_resolution="hybrid",
                                                     hybrid=HybridConfig(group=4, high_tokens=64, ratio=4.0)))
    # families with timestamped frames write a block per temporal patch: transformers derives the positions
    assert (encoded.position_blocks is not None) == (not vlm.family_spec.timestamped_frames)
    kwargs = model_inputs(vlm, encoded, "When does the scene change?")
    reference = vlm.model.generate(**kwargs, max_new_tokens=NEW_TOKENS, do_sample=False)
    reference = reference[:, kwargs["input_ids"].shape[1]:]
    ours = generate_pruned(vlm.model, kwargs, LookMPress(1.0), max_new_tokens=NEW_TOKENS).tokens
    assert torch.equal(ours, reference)
    with pytest.raises(ConfigError, match="hybrid"):
        encode_video(vlm, short_video, Options(max_visual_tokens=400, video_resolution="hybrid",
                                               compression=Compression(downsample=2)))
