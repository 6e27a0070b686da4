import json

import numpy as np
import pytest
from PIL import Image

from longvlm.datasets.examples import ImageItem, VideoItem
from longvlm.datasets.mixture import LengthBin, Mixture
from longvlm.datasets.records import read_records, record_to_example
from longvlm.testing import write_synthetic_pdf
from longvlm.errors import InputError
from longvlm.training.collate import example_length, tokenize_example
from longvlm.vlm.loading import load_vlm


@pytest.fixture()
def jsonl(tmp_path, short_video):
    Image.fromarray(np.full((60, 90, 3), 200, np.uint8)).save(tmp_path / "a.png")
    write_synthetic_pdf(tmp_path / "doc.pdf", 4)
    records = [
        {"id": "v", "media": [{"type": "video", "path": short_video, "fps": 0.5, "max_frames": 16}],
         "messages": [{"role": "user", "content": "<video>\nWhat second is shown last?"},
                      {"role": "assistant", "content": "28"}]},
        {"id": "m", "media": [{"type": "image", "path": "a.png"}, {"type": "pdf", "path": "doc.pdf", "pages": [2, 4]}],
         "messages": [{"role": "user", "content": "Look <image> and <pdf> then answer."},
                      {"role": "assistant", "content": "ok"}]},
        {"id": "t", "messages": [{"role": "user", "content": "2+2?"}, {"role": "assistant", "content": "4"}]},
    ]
    path = tmp_path / "samples.jsonl"
    path.write_text("\n".join(json.dumps(r) for r in records) + "\n\n")
    return path


def test_records_become_examples(jsonl):
    video, mixed, text = [record_to_example(r) for r in read_records(jsonl)]
    assert isinstance(video.parts[0], VideoItem) and len(video.parts[0].frames) == 15
    assert video.parts[0].timestamps[1] - video.parts[0].timestamps[0] == pytest.approx(2.0)
    assert video.answer == "28"
    kinds = [type(p).__name__ if not isinstance(p, str) else p for p in mixed.parts]
    assert kinds == ["Look ", "ImageItem", " and ", "Page 2:", "ImageItem", "\n", "Page 4:", "ImageItem", "\n",
                     " then answer."]
    assert text.parts == ["2+2?"]
    vlm = load_vlm("tiny")
    for example in (video, mixed, text):
        sample = tokenize_example(example, vlm.tokenizer, vlm.model, vlm.vision)
        assert len(sample) == example_length(example, vlm.tokenizer, vlm.config, vlm.vision)


def test_jsonl_source_in_a_mixture(jsonl):
    vlm = load_vlm("tiny")
    mixture = Mixture({f"jsonl:{jsonl}": 1.0, "text_passkey": 1.0}, [LengthBin("all", 10, 4000)],
                      lambda e: example_length(e, vlm.tokenizer, vlm.config, vlm.vision), seed=0)
    sources = {mixture.draw(i).meta["source"] for i in range(12)}
    assert sources == {f"jsonl:{jsonl}", "text_passkey"}


def test_bad_records(tmp_path):
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"messages": []}\nnot json\n')
    with pytest.raises(InputError, match="line 2: invalid JSON"):
        read_records(bad)
    record = {"_source": str(bad), "media": [{"type": "image", "path": "x.png"}],
              "messages": [{"role": "user", "content": "<video>"}, {"role": "assistant", "content": "a"}]}
    with pytest.raises(InputError, match="placeholder <video> but media entry of type 'image'"):
        record_to_example(record)
