"""The Gradio app: load a long video or PDF once, then chat about it.

Layout: on the left the input (upload or local path) with a staged progress bar, a viewer (video player /
page view) and a gallery of what the model saw; on the right the chat with streamed answers, clickable
citation chips, settings and stats. Every handler turns `LongVLMError`s into a message in the page (and a
toast), so a bad file or an empty question never stops the server.

API endpoints (for `gradio_client`): `/load_input`, `/ask`, `/jump`, `/new_chat`, `/load_model`.

Concurrency: loading inputs and models runs in one queue ("ingest") and answering in another ("answer"), so a
long video being encoded for one user does not hold up another user's question. Each browser session has its
own input, conversation and model choice (`ModelPool`); nothing one session does changes another's.
"""

from __future__ import annotations

import html
import logging
import os
import re
from dataclasses import dataclass
from pathlib import Path

import gradio as gr

from longvlm.demo.citations import Citation, evidence_citations, parse_target
from longvlm.demo.features import COMPRESSOR_CHOICES, PRESS_CHOICES, ROPE_CHOICES, model_label
from longvlm.demo.media import PDF_SUFFIXES, VIDEO_SUFFIXES, format_time, render_page
from longvlm.demo.models import PRESETS, ModelKey, ModelPool
from longvlm.demo.session import DemoSession, SessionFiles, ingest, public_message, stream_answer
from longvlm.demo.settings import DOWNSAMPLE_CHOICES, DemoSettings
from longvlm.demo.stats import stats_rows
from longvlm.errors import BudgetError, ConfigError, InputError, LongVLMError, short_reason
from longvlm.excerpts import excerpt
from longvlm.memory.loading import SHIPPED_BRIDGES
from longvlm.vlm.loading import VLM
from longvlm.vlm.room import default_new_tokens, fit_room
from longvlm.routes import ROUTE_NOTES, ROUTES, choose_route

log = logging.getLogger(__name__)

DEFAULT_MAX_UPLOAD_MB = 2048
SESSION_TTL_S = 3 * 3600  # encoded inputs of idle browser sessions are dropped after this

CSS = """
.lv-header h1 {margin-bottom: 0}
.lv-badge {display: inline-block; padding: 2px 10px; border-radius: 999px; font-size: 0.85em; font-weight: 600;
           background: var(--color-accent-soft); color: var(--body-text-color); margin-right: 8px}
.lv-badge.lv-random {background: #fde68a; color: #713f12}
.lv-badge.lv-small {background: #dbeafe; color: #1e3a8a}
.lv-note {font-size: 0.9em; opacity: 0.85}
.lv-cites {display: flex; flex-wrap: wrap; gap: 6px; align-items: center; min-height: 28px}
.lv-cites .lv-group {font-size: 0.85em; opacity: 0.75; margin: 0 2px 0 8px}
.lv-cites .lv-group:first-child {margin-left: 0}
.lv-cite {border: 1px solid var(--border-color-accent); border-radius: 6px; padding: 1px 8px; cursor: pointer;
          background: var(--background-fill-secondary); font-size: 0.85em; color: var(--body-text-color)}
.lv-cite:hover {background: var(--color-accent-soft)}
.lv-cite.lv-from-answer {border-width: 2px; font-weight: 600}
.lv-notice-error {border-left: 4px solid #dc2626; padding: 6px 10px; background: rgba(220, 38, 38, 0.08)}
.lv-notice-info {border-left: 4px solid #2563eb; padding: 6px 10px; background: rgba(37, 99, 235, 0.06)}
.lv-disabled-note {font-size: 0.8em; opacity: 0.75}
#lv-ask, #lv-new-chat {white-space: nowrap}
.lv-stats {display: grid; grid-template-columns: minmax(120px, 42%) 1fr; font-size: 0.88em}
.lv-stats > div {padding: 4px 6px; border-bottom: 1px solid var(--border-color-primary)}
.lv-stats > .lv-key {opacity: 0.8}
"""

# Clicking a citation chip fires the HTML component's `click` event with the chip's jump target.
CITES_JS = """
element.addEventListener('click', (event) => {
  const chip = event.target.closest('[data-jump]');
  if (chip) { trigger('click', {jump: chip.dataset.jump}); }
});
"""


@dataclass(frozen=True)
class DemoConfig:
    """Server-side limits of the app."""

    max_upload_mb: float = DEFAULT_MAX_UPLOAD_MB
    media_dirs: tuple[str, ...] = ()  # local paths are accepted inside these folders only (default: cwd)
    allow_local_paths: bool = True
    max_thumbnails: int = 24
    files_root: str | None = None  # where sessions keep their copies of files (default: Gradio's upload folder)


# -- small renderers --------------------------------------------------------------------------------------
def _notice(message: str, kind: str = "error") -> str:
    icon = "⚠️" if kind == "error" else "ℹ️"
    return f'<div class="lv-notice-{kind}">{icon} {html.escape(message, quote=False)}</div>'


def _chip(citation: Citation, from_answer: bool) -> str:
    cls = "lv-cite lv-from-answer" if from_answer else "lv-cite"
    title = "show this page" if citation.kind == "page" else "play the video from here"
    return (f'<button class="{cls}" data-jump="{citation.target}" title="{title}">'
            f"{html.escape(citation.label)}</button>")


def answer_citations(session: DemoSession, result) -> list[Citation]:
    """Pages/times an answer cites: those its text mentions, then (text route) the retrieved passages'."""
    cited = session.citations(result.text)
    if result.route == "text":
        targets = {c.target for c in cited}
        cited += [c for c in evidence_citations(result.evidence, len(result.evidence)) if c.target not in targets]
    return cited


def answer_record(session: DemoSession | None) -> dict:
    """The session's last answer as data (the `/last_answer` API endpoint): its question, text, route,
    citations and the pages/frames it drew on (up to 12, spread), each as {"label", "target"} (a target is
    what `/jump` takes: "p:3", "t:75.500"); {} before any answer."""
    if session is None or not session.history:
        return {}
    question, result = session.history[-1]
    return {"question": question, "answer": result.text, "route": result.route, "turns": len(session.history),
            "cited": [{"label": c.label, "target": c.target} for c in answer_citations(session, result)],
            "evidence": [{"label": c.label, "target": c.target} for c in evidence_citations(result.evidence)]}


def citations_html(session: DemoSession | None) -> str:
    """Chips for the last answer's citations, then for what the model was given; empty before any input."""
    if session is None:
        return ""
    parts = []
    if session.history:
        cited = answer_citations(session, session.history[-1][1])
        label = "Cited in the answer:" if session.route == "vlm" else "Retrieved for the answer:"
        parts.append(f'<span class="lv-group">{label}</span>')
        parts += [_chip(c, True) for c in cited] or ['<span class="lv-group">none</span>']
    seen = session.seen()
    unit = "pages" if session.kind == "pdf" else "frames"
    count = session.read_count
    shown = f" (showing {len(seen)})" if len(seen) < count else ""
    what = "The model read" if session.route == "vlm" else "Text indexed from"
    parts.append(f'<span class="lv-group">{what} {count:,} {unit}{shown}:</span>')
    parts += [_chip(c, False) for c in seen]
    return '<div class="lv-cites">' + "".join(parts) + "</div>"


def _answer_markdown(question_index: int, session: DemoSession) -> str:
    _, result = session.history[question_index]
    text = result.text if result.text.strip() else "*(the model generated no visible text)*"
    if result.stats.get("abstained"):
        why = result.stats.get("abstain_reason", "")
        text = f"{text} — *not found in the document*" + (f" ({html.escape(why)})" if why else "")
    cited = answer_citations(session, result)
    sources = ", ".join(c.label for c in cited) if cited else "none"
    how = f" ({ROUTE_NOTES[result.route]})" if result.route in ROUTE_NOTES else ""
    excerpts = ""
    if result.passages:  # folded, so that the answer itself stays in view
        lines = []
        for passage in result.passages:
            part = excerpt(passage["text"], passage.get("span"), 240)
            match = f"<mark>{html.escape(part.match)}</mark>" if part.match else ""
            lines.append(f"<b>[{html.escape(passage['cite'])}]</b> {'… ' if part.cut_start else ''}"
                         f"{html.escape(part.before)}{match}{html.escape(part.after)}{' …' if part.cut_end else ''}")
        excerpts = (f"\n\n<details><summary>{len(lines)} retrieved passages</summary>"
                    + "<br><br>".join(lines) + "</details>")
    return (f"{text}{excerpts}\n\n<sub>route: {result.route}{how} · model: {Path(result.model).name} · "
            f"cited: {sources}</sub>")


def chat_messages(session: DemoSession | None, pending: tuple[str, str] | None = None) -> list[dict]:
    """The chat as Gradio messages; `pending` is a (question, partial answer) still being generated."""
    messages: list[dict] = []
    for i, (question, _) in enumerate(session.history if session else []):
        messages += [{"role": "user", "content": question},
                     {"role": "assistant", "content": _answer_markdown(i, session)}]
    if pending is not None:
        messages += [{"role": "user", "content": pending[0]}, {"role": "assistant", "content": pending[1] + " ▌"}]
    return messages


def status_markdown(session: DemoSession | None) -> str:
    if session is None:
        return ("<span class='lv-note'>No input yet: upload a video or a PDF, or give a local path. Loading shows "
                "its stages here: decode, plan, encode, compress (text route: read, OCR).</span>")
    stats = session.stats
    if session.kind == "pdf":
        what = f"PDF · {stats.get('pages_in_document', 0):,} pages"
    else:
        what = f"video · {format_time(stats.get('video_duration_s', 0))} · {stats.get('video_fps', 0):.3g} fps"
    stages = " · ".join(f"{stage} {'✓ ' if value not in ('off', '-') else ''}{value}"
                        for stage, value in session.stages)
    if session.route == "vlm":
        ready = f"ready, {session.encoded.visual_tokens:,} visual tokens (route: vlm)"
    else:
        unit = "pages" if session.kind == "pdf" else "scenes (runs of unchanged frames)"
        ready = (f"ready, text found in {stats.get('items_with_text', 0):,} of {stats.get('items', 0):,} "
                 f"{unit} (route: text)")
    notes = "".join(f"<br><span class='lv-note'>note: {html.escape(n)}</span>" for n in stats.get("notes", []))
    return (f"<b>{html.escape(session.name)}</b> ({what}) — {ready}."
            f"<br><span class='lv-note'>{stages}</span>{notes}")


def _text_route_rows(stats: dict) -> list[tuple[str, str]]:
    rows = [("pages / frames indexed", f"{stats.get('items', 0):,} ({stats.get('items_with_text', 0):,} with "
                                       f"text, {stats.get('ocr_items', 0):,} by OCR)")]
    if "passages" in stats:
        rows.append(("passages read", f"{stats['passages']} ({stats.get('prompt_tokens', 0):,} prompt tokens)"))
    times = [f"{name} {stats[key]:.2f}s" for name, key in (("text", "time_text_extraction_s"),
                                                         ("thumbnails", "time_thumbnails_s"),
                                                         ("retrieve", "time_retrieve_s"),
                                                         ("generate", "time_generate_s")) if key in stats]
    if times:
        rows.append(("time per stage", " · ".join(times)))
    if "peak_rss_mb" in stats:
        rows.append(("peak memory (RSS)", f"{stats['peak_rss_mb']:,.0f} MiB"))
    return rows


def stats_markdown(session: DemoSession | None, vlm: VLM, extension: str = "none") -> str:
    if session is None:
        return "<i class='lv-note'>Load an input to see token counts, context length, KV memory and time per stage.</i>"
    stats = dict(session.stats)
    if session.history:
        stats.update(session.history[-1][1].stats)
        stats["notes"] = [*session.stats.get("notes", []), *session.history[-1][1].stats.get("notes", [])]
    if session.route == "text":
        rows = [("route", "text (retrieval + SmolLM2-135M-Instruct)"), *_text_route_rows(stats)]
    else:
        dtype = next(vlm.model.parameters()).dtype
        rows = stats_rows(stats, max_context=vlm.max_context, text_config=vlm.config.text_config, dtype=dtype,
                          compression_note="compression off")
        rows.append(("position extension", extension))
    rows += [("note", n) for n in dict.fromkeys(stats.get("notes", []))]
    body = "".join(f'<div class="lv-key">{html.escape(name)}</div><div>{html.escape(value)}</div>'
                   for name, value in rows)
    return f'<div class="lv-stats">{body}</div>'


ROUTE_HELP = ("Route: <b>auto</b> answers with the text route (page/frame text by text layer and OCR, retrieval, "
              "SmolLM2-135M writes the answer with citations) unless a real checkpoint is chosen; <b>vlm</b> lets "
              "the vision-language model read the pages/frames.")


def model_markdown(vlm: VLM, is_preset: bool = True) -> str:
    badge, explanation = model_label(vlm)
    kind = "lv-random" if vlm.is_random else "lv-small" if "small model" in badge else ""
    explanation = re.sub(r"`([^`]+)`", r"<code>\1</code>", html.escape(explanation))
    if is_preset and not vlm.is_random:
        explanation += " It was trained on synthetic needle tasks only (coloured shapes, passkeys, page numbers)."
    return (f'<span class="lv-badge {kind}">{html.escape(badge)}</span><span class="lv-note">{explanation}'
            f"<br>{ROUTE_HELP}</span>")


def budget_maximum(vlm: VLM) -> int:
    """Largest visual-token budget that fits `vlm` with room for a question and an answer."""
    return max(64, fit_room(vlm).visual_tokens)


def new_tokens_maximum(vlm: VLM) -> int:
    """Largest answer length offered: half the model's context, at most 1,024."""
    return max(8, min(1024, vlm.max_context // 2))


# -- input paths ------------------------------------------------------------------------------------------
def resolve_input(upload: str | None, local_path: str | None, config: DemoConfig) -> str:
    """The file to load: the typed local path (inside the allowed folders) if there is one, else the upload.
    (A new upload clears the path box first, so the latest choice wins in the UI.)"""
    text = (local_path or "").strip()
    if not text:
        if upload:
            return str(upload)
        raise InputError("input", "no file: upload a video or PDF, or type a local path")
    if not config.allow_local_paths:
        raise InputError(text, "local paths are turned off on this server (it listens beyond localhost); "
                               "upload the file, or start it with --media-dir DIR")
    path = Path(text).expanduser().resolve()
    roots = [Path(d).expanduser().resolve() for d in (config.media_dirs or (os.getcwd(),))]
    if not any(path == root or root in path.parents for root in roots):
        raise InputError(text, "outside the folders this app may read (the server's --media-dir folders)")
    if not path.is_file():
        raise InputError(text, "file not found")
    return str(path)


# -- the app ----------------------------------------------------------------------------------------------
def _upload_root() -> str:
    """Gradio's upload folder (files in it are served to the app's clients; nothing else on disk is)."""
    from gradio.utils import get_upload_folder

    return str(get_upload_folder())


def close_session(session: DemoSession | None) -> None:
    """Delete a session's files (Gradio calls this when a browser session ends or expires)."""
    if session is not None:
        session.close()


# -- the app ----------------------------------------------------------------------------------------------
def build_demo(pool: ModelPool, config: DemoConfig = DemoConfig()) -> gr.Blocks:
    """The Gradio Blocks app around a pool of models (each session picks its own, from the pool's choices)."""
    defaults = DemoSettings()
    first = pool.vlm
    files_root = config.files_root or _upload_root()

    def session_model(key: ModelKey | None) -> tuple[ModelKey, VLM]:
        key = key or pool.default
        return key, pool.get(key)

    with gr.Blocks(title="longvlm demo", analytics_enabled=False, delete_cache=(3600, SESSION_TTL_S)) as demo:
        session_state = gr.State(None, time_to_live=SESSION_TTL_S, delete_callback=close_session)
        model_state = gr.State(None, time_to_live=SESSION_TTL_S)  # this session's ModelKey (None: launch model)
        gr.Markdown("# longvlm · ask a long video or PDF", elem_classes="lv-header")
        model_md = gr.HTML(model_markdown(first, pool.default.name in PRESETS), elem_id="lv-model")

        with gr.Row(equal_height=False):
            with gr.Column(scale=6, min_width=380):
                with gr.Row(equal_height=True):
                    upload = gr.File(label="Upload a video (hour-long is fine) or a PDF", scale=3,
                                     file_types=list(PDF_SUFFIXES + VIDEO_SUFFIXES), elem_id="lv-upload",
                                     height=110)
                    with gr.Column(scale=2, min_width=200):
                        local_path = gr.Textbox(label="…or a local path", elem_id="lv-path",
                                                placeholder="/path/to/talk.mp4" if config.allow_local_paths
                                                else "turned off on this server",
                                                interactive=config.allow_local_paths)
                        load_btn = gr.Button("Load", elem_id="lv-load", size="md")
                status = gr.HTML(status_markdown(None), elem_id="lv-status", min_height=64, padding=True,
                                 container=True)
                with gr.Tabs() as tabs:
                    with gr.Tab("Viewer", id="viewer"):
                        viewer_hint = gr.Markdown("<span class='lv-note'>The video or the cited page shows here. "
                                                  "Click a citation or a thumbnail to jump.</span>")
                        video = gr.Video(label="Video", visible=False, elem_id="lv-video", interactive=False,
                                         height=420)
                        page = gr.Image(label="Page", visible=False, elem_id="lv-page", type="pil",
                                        interactive=False, height=560, format="jpeg")
                    with gr.Tab("What the model saw", id="seen"):
                        gallery = gr.Gallery(label="Sampled frames / pages (click to jump)", columns=5,
                                             height=440, elem_id="lv-gallery", allow_preview=False,
                                             object_fit="contain", format="jpeg")

            with gr.Column(scale=5, min_width=360):
                chatbot = gr.Chatbot(label="Chat", height=420, elem_id="lv-chat", buttons=["copy"],
                                     placeholder="Load an input, then ask. Follow-up questions reuse what was "
                                                 "read.")
                with gr.Row(equal_height=True):
                    question = gr.Textbox(placeholder="Ask about the video or the PDF…", show_label=False, lines=1,
                                          max_lines=4, scale=1, elem_id="lv-question", container=False)
                    ask_btn = gr.Button("Ask", variant="primary", scale=0, min_width=80, elem_id="lv-ask")
                    clear_btn = gr.Button("New chat", scale=0, min_width=110, elem_id="lv-new-chat")
                notice = gr.HTML("", elem_id="lv-notice")
                cites = gr.HTML("", elem_id="lv-cites", js_on_load=CITES_JS)
                with gr.Accordion("Settings", open=False, elem_id="lv-settings"):
                    route = gr.Dropdown(list(ROUTES), value=defaults.route, elem_id="lv-route",
                                        label="Route (used when an input is loaded): auto, text (retrieval + "
                                              "SmolLM2-135M, no VLM), vlm (the model below reads the "
                                              "pages/frames)")
                    with gr.Row(equal_height=True):
                        model_box = gr.Dropdown(pool.choices, value=pool.default.name, scale=3,
                                                label="Model (this session only)", elem_id="lv-model-dir")
                        model_btn = gr.Button("Load model", scale=1, min_width=110)
                    budget_max = budget_maximum(first)
                    budget = gr.Slider(min(64, budget_max), budget_max, value=budget_max, step=1,
                                       elem_id="lv-budget",
                                       label="Visual-token budget (vlm route; at most what fits the model)")
                    with gr.Row():
                        fps = gr.Number(defaults.sample_fps, label="Video sampling (frames/s)", minimum=0.01,
                                        maximum=60)
                        max_frames = gr.Number(0, label="Max frames (0: no cap)", precision=0, minimum=0)
                    max_new = gr.Slider(8, new_tokens_maximum(first), value=default_new_tokens(first.max_context),
                                        step=8, label="Max new tokens", elem_id="lv-max-new")
                    with gr.Row():
                        compressor = gr.Dropdown(list(COMPRESSOR_CHOICES), value="none",
                                                 label="Visual compressor (none: average pooling)")
                        ratio = gr.Dropdown(list(DOWNSAMPLE_CHOICES), value="1", label="Ratio (k×k)")
                    with gr.Row():
                        press = gr.Dropdown(list(PRESS_CHOICES), value="none", label="KV pruning")
                        kv_budget = gr.Slider(0.05, 1.0, value=1.0, step=0.05, label="KV budget (fraction kept)")
                    memory = gr.Dropdown(["off", *SHIPPED_BRIDGES], value=defaults.memory_bridge,
                                         elem_id="lv-memory",
                                         label="Memory bridge for videos: off, or a shipped one (for the model of "
                                               "the same name)")
                    with gr.Row():
                        rope_method = gr.Dropdown(list(ROPE_CHOICES), value="none", label="Position extension")
                        rope_scale = gr.Number(1.0, label="Extension scale", minimum=1.0, maximum=64.0)
                    notes = [f"Uploads up to {config.max_upload_mb:,.0f} MB.",
                             "Position extension is applied with “Load model”."]
                    gr.Markdown("<span class='lv-disabled-note'>" + "<br>".join(map(html.escape, notes)) + "</span>")
                with gr.Accordion("Stats", open=True):
                    stats_md = gr.HTML(stats_markdown(None, first), elem_id="lv-stats")
        jump_box = gr.Textbox(visible=False, elem_id="lv-jump")
        answer_json = gr.JSON(visible=False)  # the API's `/last_answer` output
        answer_btn = gr.Button(visible=False)

        # -- handlers ------------------------------------------------------------------------------------
        def settings_from(budget_v, fps_v, max_frames_v, max_new_v, comp_v, ratio_v, press_v, kv_v, memory_v,
                          route_v) -> DemoSettings:
            return DemoSettings(max_visual_tokens=int(budget_v), sample_fps=float(fps_v or 0),
                                max_frames=int(max_frames_v) if max_frames_v else None,
                                max_new_tokens=int(max_new_v), compressor=comp_v or "none",
                                downsample=str(ratio_v or "1"), kv_press=press_v or "none",
                                kv_budget=float(kv_v), memory_bridge=(memory_v or "off").strip(),
                                route=route_v or "auto").validated()

        def load_input(upload_v, path_v, budget_v, fps_v, max_frames_v, max_new_v, comp_v, ratio_v, press_v, kv_v,
                       memory_v, route_v, current, key, progress=gr.Progress()):
            def report(stage, done, total, text, unit):
                progress((done, total) if done is not None and total else 0.0, desc=text, unit=unit)

            shown = (path_v or "").strip() or (Path(upload_v).name if upload_v else "input")
            try:
                settings = settings_from(budget_v, fps_v, max_frames_v, max_new_v, comp_v, ratio_v, press_v, kv_v,
                                         memory_v, route_v)
                if settings.memory_bridge not in ("off", *SHIPPED_BRIDGES):
                    raise ConfigError("the memory bridge must be off or a shipped one")
                path = resolve_input(upload_v, path_v, config)
                key, vlm = session_model(key)
                chosen = choose_route(settings.route, model_given=key.name not in PRESETS)
                SessionFiles.sweep(files_root, SESSION_TTL_S)
                session = ingest(vlm if chosen == "vlm" else None, path, settings, name=shown, route=chosen,
                                 model=key, files=SessionFiles(files_root), max_upload_mb=config.max_upload_mb,
                                 max_thumbnails=config.max_thumbnails, report=report)
            except LongVLMError as exc:
                gr.Warning(short_reason(exc))
                return (current, status_markdown(current), *[gr.skip()] * 7,
                        _notice(f"Could not load the input: {exc}"))
            except Exception as exc:  # a bug or a library failure: report it, keep serving
                log.exception("loading %r failed", shown)
                reason = public_message(Exception(short_reason(exc)), str(upload_v or path_v), shown)
                gr.Warning(reason)
                return (current, status_markdown(current), *[gr.skip()] * 7,
                        _notice(f"Internal error while loading {shown}: {reason}"))
            close_session(current)
            is_video = session.kind == "video"
            gallery_items = [(t.image, t.caption) for t in session.thumbnails]
            first_page = session.thumbnails[0].target if session.thumbnails else "p:1"
            return (session, status_markdown(session), gallery_items, gr.update(visible=False),
                    gr.update(value=session.path if is_video else None, visible=is_video, playback_position=0),
                    gr.update(value=render_page(session.path, int(first_page[2:])) if not is_video else None,
                              visible=not is_video, label=None if is_video else f"Page {first_page[2:]}"),
                    chat_messages(session), citations_html(session), stats_markdown(session, vlm, key.extension),
                    _notice(f"Loaded {session.name}. Ask a question.", "info"))

        def ask(question_v, session, max_new_v, press_v, kv_v, key):
            try:
                if session is None:
                    raise InputError("input", "nothing loaded yet: upload a video or PDF (or give a path) first")
                key, vlm = session_model(key)
                if session.route == "vlm" and session.model != key:
                    raise ConfigError("the model was changed since this input was loaded; load the input again")
                settings = DemoSettings(max_new_tokens=int(max_new_v), kv_press=press_v or "none",
                                        kv_budget=float(kv_v)).validated()
                kv = settings.compression() if session.route == "vlm" else None
                text_q = (question_v or "").strip()
                # no lock held across yields (a generator may resume on another thread): the "answer"
                # concurrency group runs one answer at a time
                for text, result in stream_answer(vlm if session.route == "vlm" else None, session, text_q,
                                                  max_new_tokens=settings.max_new_tokens,
                                                  kv_press=kv.kv_press if kv is not None else None):
                    if result is None:
                        yield (gr.skip(), chat_messages(session, (text_q, text)), gr.skip(), gr.skip(), "", "",
                               gr.skip(), gr.skip())
            except Exception as exc:  # LongVLMError: the user's to fix; anything else: logged, app keeps serving
                if not isinstance(exc, LongVLMError):
                    log.exception("answering failed")
                message = str(exc) if session is None else public_message(exc, session.path, session.name)
                if isinstance(exc, BudgetError) and session is not None and session.history:
                    message += "; or start a new chat (earlier turns count too)"
                gr.Warning(message.splitlines()[0][:200] if message else type(exc).__name__)
                chat = chat_messages(session) if session is not None else gr.skip()  # drop a half-streamed reply
                yield gr.skip(), chat, gr.skip(), gr.skip(), _notice(message), gr.skip(), gr.skip(), gr.skip()
                return
            video_update, page_update = gr.skip(), gr.skip()
            cited = answer_citations(session, result)
            if cited and session.route == "text":  # show the best retrieved page / frame
                best = cited[0]
                if best.kind == "page" and session.kind == "pdf":
                    page_update = gr.update(value=render_page(session.path, int(best.value)), visible=True,
                                            label=f"Page {int(best.value)}")
                elif best.kind == "time" and session.kind == "video":
                    video_update = gr.update(playback_position=best.value, visible=True,
                                             label=f"Video at {best.label}")
            yield (session, chat_messages(session), citations_html(session),
                   stats_markdown(session, vlm, key.extension), "", "", video_update, page_update)

        def jump(target, session):
            try:
                if session is None:
                    raise InputError("input", "nothing loaded yet")
                citation = parse_target(target)
                if citation.kind == "page":
                    if session.kind != "pdf":
                        raise InputError(session.name, "a page citation only applies to a PDF")
                    image = render_page(session.path, int(citation.value))
                    return (gr.skip(), gr.update(value=image, visible=True, label=f"Page {int(citation.value)}"),
                            gr.Tabs(selected="viewer"), "")
                if session.kind != "video":
                    raise InputError(session.name, "a time citation only applies to a video")
                if session.duration_s is not None and citation.value > session.duration_s:
                    raise InputError(session.name, f"{citation.label} is past the end of the video")
                return (gr.update(playback_position=citation.value, visible=True, label=f"Video at {citation.label}"),
                        gr.skip(), gr.Tabs(selected="viewer"), "")
            except (LongVLMError, ValueError) as exc:
                message = str(exc) if session is None else public_message(exc, session.path, session.name)
                return gr.skip(), gr.skip(), gr.skip(), _notice(message)

        def cite_clicked(evt: gr.EventData) -> str:
            return evt.jump

        def gallery_selected(session, evt: gr.SelectData) -> str:
            if session is None or evt.index is None or evt.index >= len(session.thumbnails):
                return ""
            return session.thumbnails[evt.index].target

        def new_chat(session, key):
            if session is not None:
                session.history.clear()
            _, vlm = session_model(key)
            return (session, chat_messages(session), citations_html(session),
                    stats_markdown(session, vlm, (key or pool.default).extension), "")

        def load_model(name, method, scale, key):
            try:
                new_key = pool.key(name, method or "none", float(scale or 1.0))
                vlm = pool.get(new_key)
            except (LongVLMError, OSError, ValueError) as exc:
                reason = public_message(Exception(short_reason(exc)), "", str(name))
                gr.Warning(reason)
                return key, gr.skip(), gr.skip(), gr.skip(), _notice(f"Could not load model {name!r}: {reason}")
            room = budget_maximum(vlm)
            return (new_key, model_markdown(vlm, new_key.name in PRESETS),
                    gr.update(minimum=min(64, room), maximum=room, value=room),
                    gr.update(maximum=new_tokens_maximum(vlm), value=default_new_tokens(vlm.max_context)),
                    _notice(f"Loaded model {new_key.name} for this session. Load your input again.", "info"))

        # -- wiring --------------------------------------------------------------------------------------
        settings_inputs = [budget, fps, max_frames, max_new, compressor, ratio, press, kv_budget, memory, route]
        load_outputs = [session_state, status, gallery, viewer_hint, video, page, chatbot, cites, stats_md, notice]
        load_kwargs = dict(fn=load_input, inputs=[upload, local_path, *settings_inputs, session_state, model_state],
                           outputs=load_outputs, show_progress_on=[status], concurrency_id="ingest")

        def loading() -> str:
            return "<span class='lv-note'>Loading…</span>"

        # the status box is emptied first so that the progress bar drawn over it reads cleanly
        load_btn.click(loading, None, status, queue=False, api_visibility="private").then(
            **load_kwargs, api_name="load_input")  # registered first: it owns the API name
        upload.upload(lambda: (loading(), ""), None, [status, local_path], queue=False,
                      api_visibility="private").then(**load_kwargs, api_visibility="private")
        local_path.submit(loading, None, status, queue=False, api_visibility="private").then(
            **load_kwargs, api_visibility="private")

        ask_kwargs = dict(fn=ask, inputs=[question, session_state, max_new, press, kv_budget, model_state],
                          outputs=[session_state, chatbot, cites, stats_md, notice, question, video, page],
                          show_progress="minimal", show_progress_on=[chatbot], concurrency_id="answer")
        ask_btn.click(**ask_kwargs, api_name="ask")
        question.submit(**ask_kwargs, api_visibility="private")

        jump_outputs = [video, page, tabs, notice]
        cites.click(cite_clicked, None, jump_box, api_visibility="private").then(
            jump, [jump_box, session_state], jump_outputs, api_name="jump")
        gallery.select(gallery_selected, [session_state], jump_box, api_visibility="private").then(
            jump, [jump_box, session_state], jump_outputs, api_visibility="private")
        answer_btn.click(answer_record, [session_state], answer_json, api_name="last_answer", queue=False)
        clear_btn.click(new_chat, [session_state, model_state], [session_state, chatbot, cites, stats_md, notice],
                        api_name="new_chat")
        model_btn.click(load_model, [model_box, rope_method, rope_scale, model_state],
                        [model_state, model_md, budget, max_new, notice], api_name="load_model",
                        concurrency_id="ingest")
    return demo
