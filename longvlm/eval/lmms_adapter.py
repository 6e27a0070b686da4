"""lmms-eval integration: `lmms-eval --model longvlm --model_args pretrained=DIR[,max_visual_tokens=N] ...`.

Registered through lmms-eval's entry-point group `lmms_eval.models` (see pyproject.toml); lmms-eval is an
optional extra (`pip install longvlm[lmms]`) and is only imported when lmms-eval itself loads this module.
The model answers generation tasks (`generate_until`) with longvlm's planner, chunked encoder and backbone:
PDFs and videos given as paths by a task's `doc_to_visual` go through `encode_pdf` / `encode_video`, PIL images
through `encode_images`. Log-likelihood tasks are not supported.
"""

from __future__ import annotations

import os

VIDEO_SUFFIXES = (".mp4", ".mkv", ".avi", ".mov", ".webm", ".m4v")


def manifests():
    """Entry-point payload: the ModelManifest lmms-eval registers for `--model longvlm`."""
    from lmms_eval.models.registry_v2 import ModelManifest

    return [ModelManifest(model_id="longvlm", simple_class_path="longvlm.eval.lmms_model.LongVLM")]


def answer_request(vlm, context: str, visuals: list, *, max_visual_tokens: int | None, max_new_tokens: int | None,
                   sample_fps: float, max_frames: int | None) -> str:
    """Answer one lmms-eval request: `context` is the task's prompt, `visuals` what doc_to_visual returned.
    Budgets left as None are what fits the model (`longvlm.vlm.room.fit_room`); larger ones are lowered."""
    from PIL import Image

    from longvlm.vlm.inputs import EncodedInput, encode_images, encode_pdf, encode_video
    from longvlm.vlm.pipeline import answer
    from longvlm.vlm.room import fit_room

    room = fit_room(vlm, question=context, max_visual_tokens=max_visual_tokens, max_new_tokens=max_new_tokens)
    budget = room.encoder_budget
    visuals = [v for v in (visuals or []) if v is not None]
    paths = [v for v in visuals if isinstance(v, (str, os.PathLike))]
    images = [v for v in visuals if isinstance(v, Image.Image)]
    if paths and str(paths[0]).lower().endswith(".pdf"):
        encoded = encode_pdf(vlm, str(paths[0]), **budget)
    elif paths and str(paths[0]).lower().endswith(VIDEO_SUFFIXES):
        encoded = encode_video(vlm, str(paths[0]), sample_fps=sample_fps, max_frames=max_frames, **budget)
    elif images:
        encoded = encode_images(vlm, images, **budget)
    else:
        from longvlm.encoders.planner import Plan

        encoded = EncodedInput("text", "text", Plan([], room.visual_tokens, 0), [], [])
    return answer(vlm, encoded, context, max_new_tokens=room.new_tokens).text
