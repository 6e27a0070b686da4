"""The lmms-eval model class behind `--model longvlm` (imported by lmms-eval only; see lmms_adapter.py)."""

from __future__ import annotations

from lmms_eval.api.model import lmms

from longvlm.eval.lmms_adapter import answer_request


class LongVLM(lmms):
    """lmms-eval 'simple' model: one request at a time through longvlm's pipeline."""

    is_simple = True

    def __init__(self, pretrained: str = "small", max_visual_tokens: int | None = None,
                 max_new_tokens: int | None = None,
                 fps: float = 1.0, max_frames: int | None = None, batch_size: int = 1, **kwargs) -> None:
        super().__init__()
        from longvlm.vlm.loading import load_vlm

        self.vlm = load_vlm(pretrained)
        # None: what fits the model (longvlm.vlm.room)
        self.settings = {"max_visual_tokens": None if max_visual_tokens is None else int(max_visual_tokens),
                         "max_new_tokens": None if max_new_tokens is None else int(max_new_tokens),
                         "sample_fps": float(fps), "max_frames": None if max_frames is None else int(max_frames)}
        self.batch_size = int(batch_size)

    def generate_until(self, requests) -> list[str]:
        outputs = []
        for request in requests:
            context, gen_kwargs, doc_to_visual, doc_id, task, split = request.args
            visuals = doc_to_visual(self.task_dict[task][split][doc_id])
            settings = dict(self.settings)
            if gen_kwargs and gen_kwargs.get("max_new_tokens"):
                settings["max_new_tokens"] = int(gen_kwargs["max_new_tokens"])
            outputs.append(answer_request(self.vlm, context, visuals if isinstance(visuals, list) else [visuals],
                                          **settings))
        return outputs

    def loglikelihood(self, requests):
        raise NotImplementedError("the longvlm lmms-eval model supports generation tasks only")

    def generate_until_multi_round(self, requests):
        raise NotImplementedError("the longvlm lmms-eval model supports single-round generation tasks only")
