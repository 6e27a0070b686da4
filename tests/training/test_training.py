"""Trainer, packing, mixtures, LoRA/frozen parts, resume, and a short smoke run."""

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from longvlm.datasets import needles
from longvlm.datasets.mixture import GENERATORS, LengthBin, Mixture
from longvlm.testing import MROPE_PRESETS, write_video
from longvlm.errors import ConfigError
from longvlm.training.collate import example_length, greedy_pack, pack_rows, tokenize_example
from longvlm.training.config import config_from_dict, load_config
from longvlm.training.model_setup import apply_trainable, build_training_model, part_parameters
from longvlm.training.trainer import train
from longvlm.options import Options
from longvlm.pipeline.encode import encode_video
from longvlm.vlm.loading import load_vlm
from longvlm.vlm.prompt import example_prompt_parts

REPO = Path(__file__).resolve().parents[2]
SMOKE = REPO / "configs" / "smoke.yaml"


def _examples(seed=0):
    rng = np.random.default_rng(seed)
    return [needles.video_needle(rng, 8, question="order"), needles.document_needle(rng, 3, question="code"),
            needles.text_passkey(rng, 2), needles.image_grid_needle(rng, 2, negative=False),
            needles.video_needle(rng, 6, question="count")]


def test_training_refuses_kimi():
    vlm = load_vlm("tiny-kimi-k2.5")
    with pytest.raises(ConfigError, match="Kimi K2.5"):
        tokenize_example(_examples()[0], vlm.tokenizer, vlm.model, vlm.vision)


@pytest.mark.parametrize("preset", MROPE_PRESETS)
def test_packed_forward_equals_unpacked(preset):
    vlm = load_vlm(preset)
    samples = [tokenize_example(e, vlm.tokenizer, vlm.model, vlm.vision) for e in _examples()]
    if not vlm.family_spec.packs_samples:  # Qwen3.5 on CPU: linear attention would carry state across samples
        assert [len(row) for row in greedy_pack(samples, 10 ** 6, one_per_row=True)] == [1] * len(samples)
        samples = samples[:2]
    rows = [samples[:3], samples[3:]] if vlm.family_spec.packs_samples else [samples[:1], samples[1:]]
    batch = pack_rows(rows, vlm.tokenizer.pad_token_id)
    batch.pop("labels")
    with torch.no_grad():
        packed = vlm.model(**batch, use_cache=False).logits
        for r, row in enumerate(rows):
            offset = 0
            for sample in row:
                single = pack_rows([[sample]], vlm.tokenizer.pad_token_id)
                for key in ("labels", "position_ids"):  # the model computes its own positions here
                    single.pop(key)
                reference = vlm.model(**single).logits[0]
                torch.testing.assert_close(packed[r, offset:offset + len(sample)], reference, atol=1e-5, rtol=1e-4)
                offset += len(sample)


def test_labels_cover_exactly_the_answer():
    vlm = load_vlm("tiny")
    example = _examples()[1]
    sample = tokenize_example(example, vlm.tokenizer, vlm.model, vlm.vision)
    answer_ids = sample.input_ids[sample.labels != -100]
    assert vlm.tokenizer.decode(answer_ids) == example.answer + "<|im_end|>"
    assert len(sample) == example_length(example, vlm.tokenizer, vlm.config, vlm.vision)


def test_greedy_pack_respects_length():
    vlm = load_vlm("tiny")
    samples = [tokenize_example(e, vlm.tokenizer, vlm.model, vlm.vision) for e in _examples()]
    rows = greedy_pack(samples, 700)
    assert all(sum(len(s) for s in row) <= 700 for row in rows)
    assert sorted(id(s) for row in rows for s in row) == sorted(id(s) for s in samples)


def test_mixture_is_reproducible_and_matches_weights():
    vlm = load_vlm("tiny")
    mixture = Mixture({"video_needle/color": 3.0, "document_needle/page": 1.0},
                      [LengthBin("short", 64, 200), LengthBin("long", 201, 600)],
                      lambda e: example_length(e, vlm.tokenizer, vlm.config, vlm.vision), long_share=0.7, seed=3)
    first, again = mixture.draw(17), mixture.draw(17)
    assert first.answer == again.answer and first.meta == again.meta
    report = mixture.realised(400)
    assert abs(report["sources"]["video_needle/color"]["share"] - 0.75) < 0.07
    assert abs(report["bins"]["long"]["share"] - 0.7) < 0.07
    assert report["max_length"] <= 600
    drawn = [mixture.draw(i) for i in range(60)]
    assert all(e.meta["length"] <= 200 for e in drawn if e.meta["bin"] == "short")
    assert all(e.meta["length"] == example_length(e, vlm.tokenizer, vlm.config, vlm.vision) for e in drawn[:10])


def test_source_bin_weights_give_each_task_its_own_lengths():
    vlm = load_vlm("tiny")
    mixture = Mixture({"video_needle/color": 1.0, "text_passkey": 1.0},
                      [LengthBin("short", 64, 200), LengthBin("long", 201, 600)],
                      lambda e: example_length(e, vlm.tokenizer, vlm.config, vlm.vision), long_share=0.5,
                      source_bin_weights={"text_passkey": [0.0, 1.0]}, seed=3)
    drawn = [mixture.draw(i) for i in range(120)]
    assert {e.meta["bin"] for e in drawn if e.task == "text_passkey"} == {"long"}
    video_bins = [e.meta["bin"] for e in drawn if e.task == "video_needle/color"]
    assert 0.3 < video_bins.count("long") / len(video_bins) < 0.7  # the mixture's own long_share
    report = mixture.realised(400)
    assert report["bins"]["long"]["target"] == pytest.approx(0.75)
    assert abs(report["bins"]["long"]["share"] - 0.75) < 0.07
    with pytest.raises(ConfigError, match="one non-negative weight per bin"):
        Mixture({"text_passkey": 1.0}, [LengthBin("short", 64, 200)], len, source_bin_weights={"text_passkey": [1, 1]})
    with pytest.raises(ConfigError, match="not in the mixture"):
        Mixture({"text_passkey": 1.0}, [LengthBin("short", 64, 200)], len, source_bin_weights={"x": [1]})


def test_source_bin_weights_follow_the_stage_bins():
    from longvlm.training.trainer import BatchMaker

    vlm = load_vlm("tiny")
    config = load_config(SMOKE, {"data": {"source_bin_weights": {"text_passkey": [1.0, 3.0]}}})
    maker = BatchMaker(vlm, config)
    short, long = maker.mixture(config.stages[0]), maker.mixture(config.stages[1])
    assert short.source_bin_weights["text_passkey"].tolist() == [1.0]  # the long bin does not fit 256 tokens
    assert long.source_bin_weights["text_passkey"].tolist() == [0.25, 0.75]
    config = load_config(SMOKE, {"data": {"source_bin_weights": {"text_passkey": [0.0, 1.0]}}})
    with pytest.raises(ConfigError, match="no weight to the bins that fit"):
        BatchMaker(vlm, config).mixture(config.stages[0])


def test_every_generator_fits_its_bins():
    vlm = load_vlm("tiny")
    mixture = Mixture({name: 1.0 for name in GENERATORS}, [LengthBin("a", 100, 400), LengthBin("b", 401, 1500)],
                      lambda e: example_length(e, vlm.tokenizer, vlm.config, vlm.vision), seed=1)
    for i in range(40):
        example = mixture.draw(i)
        bound = 400 if example.meta["bin"] == "a" else 1500
        assert example.meta["length"] <= bound


def test_training_renders_a_video_as_the_pipeline_renders_the_file(tmp_path):
    """The synthetic video tasks carry the header the pipeline gives a video file (a model trained without it
    answered digit strings through the pipeline: bench/RESULTS.md, v1.5)."""
    vlm = load_vlm("tiny")
    example = needles.video_needle(np.random.default_rng(0), 8)  # 1 fps from 0 s, as written below
    path = write_video(tmp_path / "needle.mp4", example.parts[0].frames, fps=1.0)
    encoded = encode_video(vlm, path, Options(max_visual_tokens=10_000))
    parts = example_prompt_parts(example, vlm.vision)
    assert parts[0] == "Video (8 s, 8 frames from 0.0s to 7.0s):"
    assert encoded.user_parts == parts[:-1] and parts[-1] == example.parts[-1]
    tokenized = tokenize_example(example, vlm.tokenizer, vlm.model, vlm.vision)
    assert len(tokenized) == example_length(example, vlm.tokenizer, vlm.config, vlm.vision)
    header = vlm.tokenizer(parts[0], add_special_tokens=False)["input_ids"]
    ids = tokenized.input_ids.tolist()
    assert any(ids[i:i + len(header)] == header for i in range(len(ids)))


def test_mixture_videos_have_random_timings():
    timings = {(e.meta["fps"], e.meta["start_s"]) for e in (GENERATORS["video_needle/color"][0](
        np.random.default_rng(i), 3) for i in range(20))}
    assert len(timings) > 10
    assert all(1 / 30 <= fps <= 2 and 0 <= start < 3600 for fps, start in timings)


def test_frozen_parts_and_lora():
    config = load_config(SMOKE, {"trainable": {"freeze": ["vision", "merger"],
                                               "lora": {"r": 4, "lora_alpha": 8, "target_modules": ["q_proj", "v_proj"]}}})
    vlm = build_training_model(config)
    model = apply_trainable(vlm, config)
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert trainable and all("lora_" in n and "language_model" in n for n in trainable)
    assert all(".q_proj." in n or ".v_proj." in n for n in trainable)
    layers = config.model.architecture["layers"]
    assert len(trainable) == layers * 2 * 2  # (q, v) x (lora_A, lora_B) per layer
    config = load_config(SMOKE, {"trainable": {"freeze": ["llm"]}})
    vlm = build_training_model(config)
    model = apply_trainable(vlm, config)
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert trainable == {n for n, _ in part_parameters(model, "vision")} | {n for n, _ in part_parameters(model, "merger")}


def test_bad_configs_are_clear():
    with pytest.raises(ConfigError, match="unknown key"):
        config_from_dict({"optim": {"learning_rate": 1}})
    with pytest.raises(ConfigError, match="unknown part"):
        config_from_dict({"trainable": {"freeze": ["eyes"]}})
    with pytest.raises(ConfigError, match="unknown data sources"):
        Mixture({"nope": 1.0}, [LengthBin("a", 1, 2)], len)
    with pytest.raises(ConfigError, match="not found"):
        load_config("/nonexistent.yaml")


def _losses(output_dir):
    with open(Path(output_dir) / "training_log.jsonl") as fh:
        return {r["step"]: r["loss"] for r in map(json.loads, fh) if "loss" in r}


def test_resume_gives_same_next_step_loss(tmp_path):
    overrides = {"log_every": 1, "stages": [{"name": "s", "max_length": 256, "steps": 4}]}
    straight = load_config(SMOKE, {**overrides, "output_dir": str(tmp_path / "straight")})
    train(straight)
    resumed = load_config(SMOKE, {**overrides, "output_dir": str(tmp_path / "resumed")})
    train(resumed, max_steps=2)
    assert (tmp_path / "resumed" / "checkpoints" / "step-2").is_dir()
    train(resumed, resume=True)
    a, b = _losses(tmp_path / "straight"), _losses(tmp_path / "resumed")
    assert set(b) == {1, 2, 3, 4}
    for step in (3, 4):
        assert b[step] == pytest.approx(a[step], rel=1e-5), (step, a, b)


def test_learning_rate_follows_the_schedule_in_optimizer_steps(tmp_path):
    """One schedule step per optimizer step (not per micro-batch, nor per process), cosine over decay_steps."""
    from longvlm.training.trainer import _lr_lambda

    config = load_config(SMOKE, {"output_dir": str(tmp_path / "run"), "log_every": 1,
                                 "stages": [{"name": "s", "max_length": 256, "steps": 6}],
                                 "optim": {"grad_accum": 2, "rows_per_step": 1, "decay_steps": 4}})
    train(config)
    lrs = {r["step"]: r["lr"] for r in map(json.loads, (tmp_path / "run" / "training_log.jsonl").read_text()
                                          .splitlines()) if "step" in r}
    factor = _lr_lambda(config)
    assert lrs == pytest.approx({step: config.optim.lr * factor(step) for step in range(1, 7)})
    floor = config.optim.lr * config.optim.min_lr_ratio
    assert lrs[4] == lrs[5] == lrs[6] == pytest.approx(floor) and lrs[2] > lrs[3] > floor
    with pytest.raises(ConfigError, match="decay_steps"):
        load_config(SMOKE, {"optim": {"decay_steps": 0}})


def test_smoke_training_loss_decreases(tmp_path):
    config = load_config(SMOKE, {"output_dir": str(tmp_path / "run"), "log_every": 1})
    result = train(config)
    losses = _losses(tmp_path / "run")
    assert len(losses) == config.total_steps == 20
    first, last = np.mean([losses[s] for s in range(1, 6)]), np.mean([losses[s] for s in range(16, 21)])
    assert last < 0.8 * first, losses
    out = tmp_path / "run"
    assert (out / "loss_curve.png").stat().st_size > 1000 and (out / "model.safetensors").is_file()
    reloaded = load_vlm(out)  # the saved model loads through the normal path
    assert reloaded.vision.max_pixels == 12544 and result.steps == 20


def test_text_loss_is_answer_loss_plus_weighted_prompt_text_loss():
    from longvlm.training.trainer import training_loss

    vlm = load_vlm("tiny")
    samples = [tokenize_example(e, vlm.tokenizer, vlm.model, vlm.vision) for e in _examples()[:3]]
    batch = pack_rows([samples], vlm.tokenizer.pad_token_id)
    with torch.no_grad():
        plain = training_loss(vlm.model, batch)
        logits = vlm.model(**{k: v for k, v in batch.items() if k != "labels"}, use_cache=False).logits[0].float()
        assert training_loss(vlm.model, batch, 0.0) == plain
        combined = training_loss(vlm.model, batch, 0.5, vlm.tokenizer.pad_token_id)
    # reference: per sample, next-token loss on prompt text tokens (not visual, not answer), sample by sample
    text_terms, offset = [], 0
    for sample in samples:
        for i in range(1, len(sample)):
            target = int(sample.input_ids[i])
            if sample.mm_token_type_ids[i] == 0 and sample.labels[i] == -100:
                text_terms.append(float(torch.nn.functional.cross_entropy(logits[offset + i - 1], torch.tensor(target))))
        offset += len(sample)
    assert float(combined) == pytest.approx(float(plain) + 0.5 * np.mean(text_terms), rel=1e-4)


def test_stage_sources_and_bins_override_the_data_section():
    from longvlm.training.trainer import BatchMaker

    vlm = load_vlm("tiny")
    config = load_config(SMOKE, {"stages": [
        {"name": "first", "max_length": 256, "steps": 1, "sources": {"text_passkey": 1.0},
         "bins": [{"name": "short", "min_tokens": 20, "max_tokens": 120}]},
        {"name": "second", "max_length": 256, "steps": 1}]})
    maker = BatchMaker(vlm, config)
    first = maker.mixture(config.stages[0])
    assert first.sources == {"text_passkey": 1.0} and [b.max_tokens for b in first.bins] == [120]
    assert {first.draw(i).task for i in range(10)} == {"text_passkey"}
    second = maker.mixture(config.stages[1])
    assert second.sources == config.data.sources


def test_train_script_runs_a_recipe_in_parts_and_resume_skips_finished_parts(tmp_path, capsys, load_script):
    import yaml

    script = load_script("scripts/train.py")
    base = yaml.safe_load(SMOKE.read_text())
    first = {**base, "output_dir": str(tmp_path / "part1"), "stages": [{"name": "a", "max_length": 256, "steps": 2}]}
    second = {**base, "output_dir": str(tmp_path / "part2"), "model": {"source": str(tmp_path / "part1")},
              "stages": [{"name": "b", "max_length": 256, "steps": 2}]}
    paths = []
    for name, data in (("part1.yaml", first), ("part2.yaml", second)):
        paths.append(str(tmp_path / name))
        (tmp_path / name).write_text(yaml.safe_dump(data))
    assert script.main(["--config", *paths]) == 0
    assert (tmp_path / "part2" / "model.safetensors").is_file()
    trained_from = json.loads((tmp_path / "part2" / "train_config.json").read_text())["model"]["source"]
    assert trained_from == str(tmp_path / "part1")
    capsys.readouterr()
    assert script.main(["--config", *paths, "--resume"]) == 0
    assert capsys.readouterr().err.count("already finished") == 2
    # shipping puts the last part's model and train_config.json in the package, and the records (its log and loss
    # curve, each earlier part's as *_partN) in the records directory
    ship = load_script("scripts/ship_model.py")
    shipped, records = tmp_path / "shipped", tmp_path / "records"
    shipped.mkdir()
    records.mkdir()
    (shipped / "training_log_part2.jsonl").write_text("a record left in the package by an earlier layout\n")
    (records / "training_log_part2.jsonl").write_text("a record of a model shipped before\n")
    (records / "README.md").write_text("about these records\n")
    assert ship.main([str(tmp_path / "part2"), str(shipped), "--earlier-parts", str(tmp_path / "part1"),
                      "--records", str(records)]) == 0
    assert sorted(p.name for p in shipped.iterdir()) == sorted(
        name for name in ship.PACKAGE_FILES if (tmp_path / "part2" / name).is_file())
    assert json.loads((shipped / "train_config.json").read_text())["output_dir"] == str(tmp_path / "part2")
    assert sorted(p.name for p in records.iterdir()) == [
        "README.md", "loss_curve.png", "loss_curve_part1.png", "train_config_part1.json", "training_log.jsonl",
        "training_log_part1.jsonl"]
    assert json.loads((records / "train_config_part1.json").read_text())["output_dir"] == str(tmp_path / "part1")
    part1_log = (tmp_path / "part1" / "training_log.jsonl").read_text()
    assert (records / "training_log_part1.jsonl").read_text() == part1_log
    assert (records / "training_log.jsonl").read_text() == (tmp_path / "part2" / "training_log.jsonl").read_text()
    assert ship.default_records_dir("longvlm/assets/longvlm-small") == str(REPO / "models" / "longvlm-small")
    shipped_weights, trained_weights = (load_vlm(d).model.state_dict() for d in (shipped, tmp_path / "part2"))
    assert all(torch.equal(shipped_weights[k], trained_weights[k]) for k in trained_weights)


def test_a_multi_process_launch_that_accelerate_does_not_see_is_refused(tmp_path, monkeypatch):
    monkeypatch.setenv("WORLD_SIZE", "2")  # e.g. torchrun on a CPU machine without ACCELERATE_USE_CPU
    config = load_config(SMOKE, {"output_dir": str(tmp_path / "run")})
    with pytest.raises(ConfigError, match="accelerate sees 1.*ACCELERATE_USE_CPU=true"):
        train(config)
    assert not (tmp_path / "run" / "training_log.jsonl").exists()


@pytest.mark.slow
def test_two_process_cpu_training_logs_both_processes_samples(tmp_path):
    """Data-parallel training on CPU (torchrun, gloo): text-only micro-batches leave the vision tower without
    gradients on one process and must not stall DDP; the log sums both processes' samples."""
    import os
    import subprocess
    import sys

    from longvlm.training.trainer import BatchMaker

    out = tmp_path / "run"
    env = {**os.environ, "ACCELERATE_USE_CPU": "true", "OMP_NUM_THREADS": "1"}
    subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port",
                    "29517", str(REPO / "scripts" / "train.py"), "--config", str(SMOKE),
                    "--set", f"output_dir={out}", "log_every=10", "torch_threads=1"],
                   check=True, env=env, timeout=600, capture_output=True)
    config = load_config(SMOKE, {"output_dir": str(out)})
    records = [r for r in map(json.loads, (out / "training_log.jsonl").read_text().splitlines()) if "step" in r]
    record = records[-1]
    assert record["step"] == config.total_steps == 20
    # the schedule advances once per optimizer step, not once per process (mid-run it would be at its floor)
    from longvlm.training.trainer import _lr_lambda

    assert [r["lr"] for r in records] == pytest.approx([config.optim.lr * _lr_lambda(config)(s) for s in (10, 20)])
    maker = BatchMaker(load_vlm(out), config)
    batches = [maker.batch(step * 2 + rank, config.stage_at(step)) for step in range(20) for rank in range(2)]
    assert record["samples"] == sum(info["samples"] for _, info in batches)
    # the case DDP has to tolerate did occur: a micro-batch without any image or video
    assert any("pixel_values" not in batch and "pixel_values_videos" not in batch for batch, _ in batches)


def test_a_loaded_source_in_bfloat16(tmp_path):
    """`model.dtype: bfloat16` loads a model directory's weights in bf16 (half the memory); LoRA still trains."""
    load_vlm("tiny").save_pretrained(tmp_path / "tiny")
    config = load_config(SMOKE, {"model": {"source": str(tmp_path / "tiny"), "dtype": "bfloat16"},
                                 "trainable": {"lora": {"r": 4, "lora_alpha": 8, "target_modules": ["q_proj"]}}})
    vlm = build_training_model(config)
    assert {p.dtype for p in vlm.model.parameters()} == {torch.bfloat16}
    assert any(p.requires_grad for p in apply_trainable(vlm, config).parameters())
    with pytest.raises(ConfigError, match="model.dtype"):
        build_training_model(load_config(SMOKE, {"model": {"source": str(tmp_path / "tiny"), "dtype": "int8"}}))


def test_the_released_2b_architecture_has_its_parameter_count(load_script):
    """scripts/make_random_checkpoint.py: Qwen2-VL-2B's config, counted without allocating (meta device)."""
    script = load_script("scripts/make_random_checkpoint.py")
    config, tokenizer = script.released_config("qwen2-vl-2b")
    from longvlm.vlm.loading import FAMILIES

    with torch.device("meta"):
        model = FAMILIES["qwen2_vl"].model_class(config)
    assert round(sum(p.numel() for p in model.parameters()) / 1e9, 2) == 2.21
    assert config.image_token_id == tokenizer.convert_tokens_to_ids("<|image_pad|>")
    assert config.text_config.vocab_size == 151936 and config.vision_config.depth == 32


def test_a_launch_asking_for_fsdp_or_deepspeed_that_accelerate_does_not_run_is_refused(monkeypatch):
    """accelerate 1.x builds FSDP / DeepSpeed engines only on accelerators: on CPU it would run plain copies."""
    from types import SimpleNamespace

    from longvlm.training.trainer import _check_launch

    monkeypatch.delenv("WORLD_SIZE", raising=False)
    plain = SimpleNamespace(num_processes=1, distributed_type="DistributedType.NO")
    _check_launch(plain)
    for engine in ("FSDP", "DEEPSPEED"):
        monkeypatch.setenv(f"ACCELERATE_USE_{engine}", "true")
        with pytest.raises(ConfigError, match=f"asked for {engine}"):
            _check_launch(plain)
        _check_launch(SimpleNamespace(num_processes=1, distributed_type=f"DistributedType.{engine}"))
        monkeypatch.delenv(f"ACCELERATE_USE_{engine}")
    monkeypatch.setenv("WORLD_SIZE", "2")
    with pytest.raises(ConfigError, match="accelerate sees 1"):
        _check_launch(plain)


def test_a_bare_no_in_yaml_means_no_mixed_precision():
    assert config_from_dict({"mixed_precision": False}).mixed_precision == "no"
