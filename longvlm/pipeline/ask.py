"""`ask`: one question about one input, start to end (fit the model's room, encode, answer)."""

from __future__ import annotations

from longvlm.encoded import Answer, ProgressFn
from longvlm.limits import check_question
from longvlm.options import Options
from longvlm.pipeline.answer import answer
from longvlm.pipeline.encode import Source, encode
from longvlm.vlm.loading import VLM
from longvlm.vlm.room import add_notes, fit_room


def ask(vlm: VLM, question: str, source: Source, options: Options | None = None, *, kind: str | None = None,
        progress: ProgressFn | None = None) -> Answer:
    """Answer `question` about `source` (a PDF, video or image file, or a list of images) with `vlm`.

    `options` (`longvlm.options.Options`, built from names by `build_options`) say how the input is read and
    reduced (`kind`: see `encode`); budgets left as None are what fits the model (`longvlm.vlm.room.fit_room`), larger ones are
    lowered with a note in the answer's stats (`notes`). The compression composes in order: question-aware
    selection, the visual compressor, the KV press.
    """
    question = check_question(question)  # empty or longer than MAX_QUESTION_CHARS: ConfigError
    options = options or Options()
    room = fit_room(vlm, question=question, max_visual_tokens=options.max_visual_tokens,
                    max_new_tokens=options.max_new_tokens)
    encoded = encode(vlm, source, options.replace(max_visual_tokens=room.visual_tokens), question=question,
                     kind=kind, progress=progress, context_room=room.context)
    add_notes(encoded.stats, room.notes)
    return answer(vlm, encoded, question, max_new_tokens=room.new_tokens)
