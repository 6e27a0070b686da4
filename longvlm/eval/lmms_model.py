"""The lmms-eval model class behind `--model longvlm` (imported by lmms-eval only; see lmms_adapter.py).

Model arguments (`--model_args pretrained=DIR,kv_press=snapkv,...`) are the CLI's options under their Python
names, turned into `Options` by the same builder (`longvlm.options.build_options`); names such as presses,
compressors and memory bridges are the registries' names. `protocol` is described at `PROTOCOLS`."""

from __future__ import annotations

from lmms_eval.api.model import lmms

from longvlm.errors import ConfigError
from longvlm.eval.lmms_adapter import answer_request
from longvlm.eval.lmms_tasks import example_from_doc
from longvlm.eval.mmlongbench_run import protocol_answer
from longvlm.eval.niah import generate_answer
from longvlm.options import build_options
from longvlm.vlm.loading import load_vlm


PROTOCOLS = ("ask", "mmlongbench", "niah")
"""`protocol=ask` (default): each request through `encode` + `answer` with the model arguments' options;
`protocol=mmlongbench`: a PDF request answered as `longvlm eval mmlongbench` does (144 dpi, first 120 pages,
the document encoded once for all its questions); `protocol=niah`: a row of a `longvlm eval lmms-task` needle
task answered as `longvlm eval niah` does. Each gives the same answers as the longvlm command."""


def _optional(convert, value):
    return None if value is None or value == "" else convert(value)


def _flag(value) -> bool:
    return str(value).strip().lower() in ("1", "true", "yes", "on")


class LongVLM(lmms):
    """lmms-eval 'simple' model: one request at a time through longvlm's pipeline."""

    is_simple = True

    def __init__(self, pretrained: str = "small", max_visual_tokens: int | None = None,
                 max_new_tokens: int | None = None, fps: float = 1.0, max_frames: int | None = None,
                 max_pages: int | None = None, select: bool = False, compressor: str | None = None,
                 downsample: str = "1", kv_press: str | None = None, kv_budget: float | None = None,
                 memory_bridge: str | None = None, batch_size: int = 1, protocol: str = "ask", **kwargs) -> None:
        super().__init__()
        if protocol not in PROTOCOLS:
            raise ConfigError(f"protocol must be one of {', '.join(PROTOCOLS)}, got {protocol!r}")
        self.protocol = protocol
        self._documents: dict = {}  # protocol mmlongbench: the last encoded document
        self.vlm = load_vlm(pretrained)
        self.options = build_options(
            self.vlm, select=_flag(select), compressor=compressor or None, downsample=str(downsample),
            kv_press=kv_press or None, kv_budget=_optional(lambda v: float(v) if "." in str(v) else int(v), kv_budget),
            memory_bridge=memory_bridge or None, max_visual_tokens=_optional(int, max_visual_tokens),
            max_new_tokens=_optional(int, max_new_tokens), sample_fps=float(fps),
            max_frames=_optional(int, max_frames), max_pages=_optional(int, max_pages))
        self.batch_size = int(batch_size)

    def generate_until(self, requests) -> list[str]:
        return [self._answer(*request.args) for request in requests]

    def _answer(self, context, gen_kwargs, doc_to_visual, doc_id, task, split) -> str:
        doc = self.task_dict[task][split][doc_id]
        max_new = int(gen_kwargs["max_new_tokens"]) if gen_kwargs and gen_kwargs.get("max_new_tokens") else None
        if self.protocol == "niah":  # exactly what `longvlm eval niah` answers (pages read from files)
            return generate_answer(self.vlm, example_from_doc(doc), max_new or 12).text
        visuals = doc_to_visual(doc)
        visuals = visuals if isinstance(visuals, list) else [visuals]
        if self.protocol == "mmlongbench":  # exactly what `longvlm eval mmlongbench` answers
            return protocol_answer(self.vlm, str(visuals[0]), context, self._documents).text
        options = self.options if max_new is None else self.options.replace(max_new_tokens=max_new)
        return answer_request(self.vlm, context, visuals, options)

    def loglikelihood(self, requests):
        raise NotImplementedError("the longvlm lmms-eval model supports generation tasks only")

    def generate_until_multi_round(self, requests):
        raise NotImplementedError("the longvlm lmms-eval model supports single-round generation tasks only")
