"""The demo app on an hour-long video and a 120-page PDF, through `gradio_client` (slow: `pytest -m slow`)."""

from __future__ import annotations

import numpy as np
import pytest
from gradio_client import Client
from PIL import Image

from longvlm.testing import read_barcode, write_barcode_video, write_synthetic_pdf
from longvlm.demo.server import free_port, launch_demo

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def app(tmp_path_factory):
    media = tmp_path_factory.mktemp("long_media")
    demo = launch_demo("tiny", port=free_port(), block=False, quiet=True, media_dirs=[str(media)])
    try:
        yield demo.local_url, media
    finally:
        demo.close()


def _load(client: Client, path: str, budget: int) -> list:
    return client.predict(None, path, budget, 1.0, 0, 8, "none", "1", "none", 1.0, "off", "vlm",
                          api_name="/load_input")


def test_hour_long_video(app, tmp_path):
    url, media = app
    video = write_barcode_video(media / "hour.mp4", 3600, fps=2, height=64, width=64)
    client = Client(url, verbose=False, download_files=str(tmp_path), analytics_enabled=False)
    status, gallery, _, video_update, *_ = _load(client, video, 1024)
    assert "ready" in status and "video · 1:00:00" in status
    # the thumbnails are decoded at the times they are captioned with: the barcode shows that second
    assert len(gallery) == 24
    for item in gallery:
        minutes_seconds = [int(x) for x in item["caption"].split(":")]
        second = minutes_seconds[-1] + 60 * minutes_seconds[-2] + (3600 * minutes_seconds[0]
                                                                    if len(minutes_seconds) == 3 else 0)
        assert read_barcode(np.asarray(Image.open(item["image"]).convert("RGB"))) == second
    assert video_update["visible"] is True
    job = client.submit("When does the counter show 3000?", 8, "none", 1.0, api_name="/ask")
    chat, cites, stats, notice, *_ = job.result()
    assert notice == "" and "route: vlm" in str(chat[-1]) and "context length" in stats
    video_update, _, notice = client.predict("t:3500", api_name="/jump")
    assert video_update["playback_position"] == 3500 and notice == ""


def test_120_page_pdf(app):
    url, media = app
    pdf = write_synthetic_pdf(media / "long.pdf", 120)
    client = Client(url, verbose=False, download_files=False, analytics_enabled=False)
    status, gallery, *_ = _load(client, pdf, 2048)
    assert "ready" in status and "120 pages" in status and len(gallery) == 24
    pages = [int(item["caption"].removeprefix("p.")) for item in gallery]
    # 32 pages fit 2048 tokens at the 64-token minimum; the planner keeps them spread over the document
    assert pages == sorted(set(pages)) and pages[0] <= 4 and pages[-1] >= 117
    for question in ("What is the secret code of page 77?", "And of page 78?"):
        chat, *_ = client.submit(question, 8, "none", 1.0, api_name="/ask").result()
    assert [m["role"] for m in chat] == ["user", "assistant"] * 2
    _, page_update, notice = client.predict("p:120", api_name="/jump")
    assert page_update["label"] == "Page 120" and notice == ""
