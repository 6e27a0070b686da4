"""lmms-eval integration: `lmms-eval --model longvlm --model_args pretrained=DIR[,max_visual_tokens=N] ...`.

Registered through lmms-eval's entry-point group `lmms_eval.models` (see pyproject.toml); lmms-eval is an
optional extra (`pip install longvlm[lmms]`) and is only imported when lmms-eval itself loads this module.
The model answers generation tasks (`generate_until`) with longvlm's planner, chunked encoder and backbone:
files given as paths by a task's `doc_to_visual` and PIL images go through `longvlm.pipeline.encode.encode`
(the input's kind is detected from its content), with `Options` built from the model arguments by the same
builder as the CLI (`longvlm.options.build_options`). Log-likelihood tasks are not supported.
"""

from __future__ import annotations

import os

from PIL import Image

from longvlm.encoded import EncodedInput
from longvlm.options import Options
from longvlm.pipeline.answer import answer
from longvlm.pipeline.encode import encode
from longvlm.planning.planner import Plan
from longvlm.vlm.loading import VLM
from longvlm.vlm.room import fit_room



def manifests():
    """Entry-point payload: the ModelManifest lmms-eval registers for `--model longvlm`."""
    from lmms_eval.models.registry_v2 import ModelManifest  # lmms-eval is optional: only when it loads us

    return [ModelManifest(model_id="longvlm", simple_class_path="longvlm.eval.lmms_model.LongVLM")]


def answer_request(vlm: VLM, context: str, visuals: list, options: Options | None = None) -> str:
    """Answer one lmms-eval request: `context` is the task's prompt, `visuals` what doc_to_visual returned (a
    file path: PDF, video or image, its kind detected from its content; or PIL images). Budgets left as None
    in `options` are what fits the model (`longvlm.vlm.room.fit_room`); larger ones are lowered."""
    options = options or Options()
    room = fit_room(vlm, question=context, max_visual_tokens=options.max_visual_tokens,
                    max_new_tokens=options.max_new_tokens)
    options = options.replace(max_visual_tokens=room.visual_tokens)
    visuals = [v for v in (visuals or []) if v is not None]
    paths = [v for v in visuals if isinstance(v, (str, os.PathLike))]
    images = [v for v in visuals if isinstance(v, Image.Image)]
    if paths:
        encoded = encode(vlm, paths[0], options, question=context, context_room=room.context)
    elif images:
        encoded = encode(vlm, images, options, question=context, context_room=room.context)
    else:
        encoded = EncodedInput("text", "text", Plan([], room.visual_tokens, 0), [], [], options=options)
    return answer(vlm, encoded, context, max_new_tokens=room.new_tokens).text
