"""The Gradio app through `gradio_client`, against a server started here on 127.0.0.1 (random free port)."""

from __future__ import annotations

import shutil
from pathlib import Path
from types import SimpleNamespace

import pytest
from gradio_client import Client, handle_file

from longvlm.testing import write_encrypted_pdf, write_synthetic_pdf
from longvlm.demo.models import ModelPool
from longvlm.demo.server import free_port, launch_demo
from gradio.utils import get_upload_folder as gradio_upload_folder
from longvlm.vlm.loading import load_vlm

MAX_UPLOAD_MB = 1
# /load_input inputs after the file and the path: budget, fps, max frames, max new tokens, compressor, ratio,
# KV press, KV budget, memory bridge, route
SETTINGS = (256, 1.0, 0, 16, "none", "1", "none", 1.0, "off", "vlm")


@pytest.fixture(scope="module")
def server(fixture_dir, tmp_path_factory):
    import torch

    from longvlm.memory.bridge import MemoryBridge, MemoryBridgeConfig
    from longvlm.memory import loading

    media = fixture_dir / "media"
    media.mkdir(exist_ok=True)
    (media / "secret.txt").write_text("not for the web")
    models = tmp_path_factory.mktemp("models")
    load_vlm("tiny-qwen2.5-vl").save_pretrained(models / "qwen25")
    pool = ModelPool("tiny", models_dirs=[str(models)])
    vision_calls = []
    pool.vlm.model.model.visual.register_forward_hook(lambda *args: vision_calls.append(1))
    torch.manual_seed(0)  # a bridge for the tiny model, offered like a shipped one
    bridge_dir = tmp_path_factory.mktemp("bridge")
    MemoryBridge(MemoryBridgeConfig(pool.vlm.config.text_config.hidden_size, 8)).save_pretrained(bridge_dir)
    loading.SHIPPED_BRIDGES["tiny-test"] = bridge_dir
    demo = launch_demo(host="127.0.0.1", port=free_port(), max_upload_mb=MAX_UPLOAD_MB, media_dirs=[str(media)],
                       pool=pool, block=False, quiet=True)
    try:
        yield SimpleNamespace(url=demo.local_url, pool=pool, vision_calls=vision_calls, media=media, models=models)
    finally:
        demo.close()
        loading.SHIPPED_BRIDGES.pop("tiny-test")


def client(server) -> Client:
    """A new browser-like session (its own state)."""
    return Client(server.url, verbose=False, download_files=False, analytics_enabled=False)


def load(c: Client, upload=None, path: str = "", **settings) -> dict:
    values = dict(zip(("budget", "fps", "max_frames", "max_new", "compressor", "ratio", "press", "kv_budget",
                       "memory", "route"), SETTINGS, strict=True))
    values.update(settings)
    out = c.predict(upload, path, *values.values(), api_name="/load_input")
    names = ("status", "gallery", "hint", "video", "page", "chat", "cites", "stats", "notice")
    return dict(zip(names, out, strict=True))


def ask(c: Client, question: str) -> tuple[list, dict]:
    """All streamed updates of one question, and the last one by name."""
    job = c.submit(question, 16, "none", 1.0, api_name="/ask")
    job.result()
    updates = job.outputs()
    return updates, dict(zip(("chat", "cites", "stats", "notice", "question", "video", "page"), updates[-1],
                             strict=True))


def text_of(message: dict) -> str:
    content = message["content"]
    return content if isinstance(content, str) else " ".join(part.get("text", "") for part in content)


@pytest.fixture(scope="module")
def pdf(server):
    return write_synthetic_pdf(server.media / "four.pdf", 4)


def test_pdf_upload_chat_follow_up_and_page_jump(server, pdf):
    c = client(server)
    before = len(server.vision_calls)
    loaded = load(c, handle_file(pdf))
    assert "ready" in loaded["status"] and "PDF · 4 pages" in loaded["status"]
    assert [item["caption"] for item in loaded["gallery"]] == ["p.1", "p.2", "p.3", "p.4"]
    assert loaded["page"]["label"] == "Page 1" and loaded["page"]["visible"] is True
    assert 'data-jump="p:1"' in loaded["cites"] and "The model read 4 pages" in loaded["cites"]
    assert "visual tokens before compression" in loaded["stats"] and "Loaded four.pdf" in loaded["notice"]
    assert len(server.vision_calls) - before == 1  # 4 pages: one chunk through the vision tower

    updates, first = ask(c, "What is the secret code of page 2?")
    chat = first["chat"]
    assert [m["role"] for m in chat] == ["user", "assistant"]
    assert "route: vlm (the vision-language model read" in text_of(chat[1]) and "model: tiny" in text_of(chat[1])
    assert "Cited in the answer" in first["cites"] and 'data-jump="p:2"' in first["cites"]
    assert "context length" in first["stats"] and first["notice"] == ""
    streamed = [u[0] for u in updates[:-1] if isinstance(u[0], list)]
    assert streamed, "the answer was not streamed"
    assert all(text_of(u[-1]).endswith("▌") for u in streamed)  # partial answers carry the cursor

    _, second = ask(c, "And page 3?")
    assert [m["role"] for m in second["chat"]] == ["user", "assistant"] * 2
    assert len(server.vision_calls) - before == 1  # the follow-up reused the encoded input

    video_update, page_update, notice = c.predict("p:3", api_name="/jump")
    assert page_update["label"] == "Page 3" and page_update["value"] and notice == ""
    *_, notice = c.predict("t:3", api_name="/jump")
    assert "only applies to a video" in notice
    *_, notice = c.predict("p:99", api_name="/jump")
    assert "page 99 does not exist" in notice
    chat, *_ = c.predict(api_name="/new_chat")
    assert chat == []


def test_video_by_local_path_and_seek(server, short_video):
    path = shutil.copy(short_video, server.media / "clip.mp4")
    c = client(server)
    loaded = load(c, path=str(path), budget=128, fps=0.5)
    assert "ready" in loaded["status"] and "video · 0:30" in loaded["status"]
    captions = [item["caption"] for item in loaded["gallery"]]
    assert captions and all(":" in caption for caption in captions)
    assert loaded["video"]["visible"] is True and loaded["video"]["value"] and loaded["page"]["visible"] is False
    assert 'data-jump="t:' in loaded["cites"]
    video_update, _, notice = c.predict("t:12.5", api_name="/jump")
    assert video_update["playback_position"] == 12.5 and video_update["label"] == "Video at 0:12" and notice == ""
    *_, notice = c.predict("t:45", api_name="/jump")
    assert "past the end" in notice


def test_video_through_a_memory_bridge(server, short_video, tmp_path):
    path = shutil.copy(short_video, server.media / "clip_memory.mp4")
    c = client(server)
    refused = load(c, path=str(path), budget=128, fps=0.5, memory="small")  # trained for another model
    assert "trained with another model" in refused["notice"] and "No input yet" in refused["status"]
    assert "replaces visual compression" in load(c, path=str(path), memory="small", press="snapkv")["notice"]
    with pytest.raises(Exception, match="not in the list of choices"):  # no client can name a bridge folder
        load(c, path=str(path), memory=str(tmp_path))
    loaded = load(c, path=str(path), budget=128, fps=0.5, memory="tiny-test")
    assert "ready" in loaded["status"], loaded["notice"]
    _, reply = ask(c, "What is shown?")
    assert [m["role"] for m in reply["chat"]] == ["user", "assistant"] and reply["notice"] == ""


def test_bad_inputs_show_a_message_and_the_app_keeps_serving(server, pdf, tmp_path):
    c = client(server)
    notice = ask(c, "anything?")[1]["notice"]
    assert "nothing loaded yet" in notice

    corrupt = tmp_path / "corrupt.pdf"
    corrupt.write_bytes(b"%PDF-1.4 this is not really a pdf")
    encrypted = Path(write_encrypted_pdf(tmp_path / "locked.pdf"))
    unreadable = tmp_path / "noise.mp4"
    unreadable.write_bytes(bytes(range(256)) * 64)
    for bad, message in ((corrupt, "corrupt or not a PDF"), (encrypted, "encrypted"),
                         (unreadable, "unreadable video")):
        result = load(c, handle_file(str(bad)))
        assert message in result["notice"] and bad.name in result["notice"], result["notice"]
        assert "No input yet" in result["status"]  # nothing was replaced

    oversize = server.media / "huge.pdf"
    oversize.write_bytes(b"%PDF-" + bytes(int(1.5 * 1024 * 1024)))
    assert "over this app's 1 MB limit" in load(c, path=str(oversize))["notice"]
    with pytest.raises(ValueError, match="exceeds the maximum file size of 1048576 bytes"):
        load(c, handle_file(str(oversize)))  # Gradio refuses the upload (launch(max_file_size=...))
    assert "outside the folders" in load(c, path=pdf.replace("media/four.pdf", "four.pdf"))["notice"]
    assert "max frames must be at least 2" in load(c, handle_file(pdf), max_frames=1)["notice"]

    assert "ready" in load(c, handle_file(pdf))["status"]  # still serving, and this session works
    _, empty = ask(c, "   ")
    assert "question is empty" in empty["notice"]
    _, good = ask(c, "Which page mentions 1111?")
    assert [m["role"] for m in good["chat"]] == ["user", "assistant"]


def test_a_model_choice_is_the_sessions_own_and_folders_cannot_be_named(server, pdf, tmp_path):
    mine, other = client(server), client(server)
    load(mine, handle_file(pdf))
    load(other, handle_file(pdf))
    for probe in (str(tmp_path / "missing"), str(server.models / "qwen25"), "/etc"):
        with pytest.raises(Exception, match="not in the list of choices"):  # Gradio refuses it before us
            mine.predict(probe, "none", 1.0, api_name="/load_model")
    badge, budget, max_new, notice = mine.predict("qwen25", "none", 1.0, api_name="/load_model")
    assert "Qwen2.5-VL" in badge and "random weights" not in badge and "for this session" in notice
    assert budget["maximum"] == budget["value"] <= 8192
    _, stale = ask(mine, "still there?")
    assert "load the input again" in stale["notice"]
    assert "ready" in load(mine, handle_file(pdf))["status"]
    _, fresh = ask(mine, "and now?")
    assert "model: qwen25" in text_of(fresh["chat"][1])
    _, untouched = ask(other, "which model answers me?")  # the other session still has the launch model
    assert "model: tiny" in text_of(untouched["chat"][1]) and untouched["notice"] == ""


def test_media_files_are_not_served_and_errors_show_no_server_paths(server, pdf, tmp_path):
    import httpx

    secret = server.media / "secret.txt"
    for path in (secret, Path(pdf)):
        response = httpx.get(f"{server.url}gradio_api/file={path}")
        assert response.status_code == 403, path
    c = client(server)
    loaded = load(c, path=str(pdf))  # read by local path: the viewer gets the session's copy, not the original
    assert "ready" in loaded["status"]
    broken = tmp_path / "Quarterly Report.pdf"
    broken.write_bytes(b"%PDF-1.4 not really")
    notice = load(c, handle_file(str(broken)))["notice"]
    assert "Quarterly Report.pdf: corrupt" in notice and "/tmp" not in notice and str(tmp_path) not in notice
    notice = load(c, path=str(server.media / "missing.pdf"))["notice"]
    assert "file not found" in notice
    notice = load(c, path="/etc/passwd")["notice"]
    assert "outside the folders" in notice and str(server.media) not in notice


def test_a_sessions_files_are_removed_when_it_loads_another(server, pdf):
    from longvlm.demo.session import SessionFiles

    root = Path(gradio_upload_folder())
    before = set(root.glob(SessionFiles.PREFIX + "*"))
    c = client(server)
    load(c, handle_file(pdf))
    first = set(root.glob(SessionFiles.PREFIX + "*")) - before
    assert len(first) == 1 and any(p.suffix == ".pdf" for p in next(iter(first)).iterdir())
    load(c, handle_file(pdf))
    second = set(root.glob(SessionFiles.PREFIX + "*")) - before
    assert len(second) == 1 and second.isdisjoint(first)  # the first copy is gone


def test_loading_a_slow_input_does_not_hold_up_another_sessions_question(server, tmp_path, monkeypatch):
    """Client A loads a scanned PDF on the text route (OCR: seconds) while client B asks about its PDF."""
    import threading
    import time

    from bad_input_files import write_scanned_pdf

    monkeypatch.setenv("LONGVLM_CACHE", str(tmp_path / "cache"))  # no OCR results from an earlier run

    scanned = write_scanned_pdf(server.media / "scanned.pdf", 12)
    fast = write_synthetic_pdf(server.media / "fast.pdf", 2)
    a, b = client(server), client(server)
    load(b, path=str(fast))
    finished = {}

    def slow_load():
        load(a, path=str(scanned), route="text")
        finished["a"] = time.perf_counter()

    worker = threading.Thread(target=slow_load)
    started = time.perf_counter()
    worker.start()
    time.sleep(1.0)
    _, reply = ask(b, "What is the secret code of page 2?")
    finished["b"] = time.perf_counter()
    worker.join()
    assert reply["notice"] == "" and [m["role"] for m in reply["chat"]] == ["user", "assistant"]
    assert finished["b"] < finished["a"], (finished["a"] - started, finished["b"] - started)


def test_the_readmes_api_example_runs_against_the_shipped_demo(monkeypatch):
    """README "The demo as an API": its gradio_client example, as written, against the app `longvlm demo`
    serves (default model, default settings; only the URL is this test's port)."""
    import re

    from longvlm.vlm.loading import default_model

    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    example = re.search(r"```python demo-api\n(.*?)```", readme, flags=re.S).group(1)
    demo = launch_demo(host="127.0.0.1", port=free_port(), pool=ModelPool(default_model()), block=False, quiet=True)
    try:
        monkeypatch.chdir(Path(__file__).resolve().parents[2])  # the example names samples/report.pdf
        names: dict = {"__name__": "readme_demo_api"}
        exec(compile(example.replace("http://127.0.0.1:7860/", demo.local_url), "README demo-api", "exec"), names)
    finally:
        demo.close()
    assert "ready" in names["status"] and names["notice"] == ""
    answer = names["answer"]
    assert answer["turns"] == 2 and answer["question"] == "Which page is it on?" and answer["answer"]
    assert answer["cited"] and all(c["target"].startswith("p:") for c in answer["cited"])
    assert names["page"]["label"] == f"Page {answer['cited'][0]['target'][2:]}"
