"""The data path for one input: `encode` (detect kind, rank, plan, read, run the vision tower, compress), then
`answer` (chat tokens, KV press, greedy generation); `ask` does both for one question."""

from longvlm.pipeline.answer import answer, model_inputs
from longvlm.pipeline.ask import ask
from longvlm.pipeline.encode import encode, encode_example, encode_images, encode_pdf, encode_video

__all__ = ["answer", "ask", "encode", "encode_example", "encode_images", "encode_pdf", "encode_video",
           "model_inputs"]
