"""Load benchmark of the demo: N clients ask about their own PDFs while one more client loads a long video.

    python bench/demo_load.py [--clients 8] [--seconds 120] [--video-minutes 60] [--out-dir bench/results]

Starts the demo exactly as shipped (`python -m longvlm.cli demo --port P`, on 127.0.0.1, in a temporary
folder that is its default --media-dir), waits until it answers HTTP and always stops it at the end. Every
client is its own `gradio_client.Client` (its own browser session):

* `--clients` PDF clients each upload a different real PDF from MMLongBench-Doc (every page with a text
  layer, so the default route "auto" is the text route: retrieval + SmolLM2-135M) with the page's default
  settings (read from the app's API description), then ask that document's questions from samples.json in a
  loop for `--seconds`;
* `--video-delay` seconds into that loop one more client loads a 1-hour 1280x720 video (a loop of
  dc_demo.mp4, made in seconds by stream copy) by local path with the default settings, records its
  time-to-ready, then asks one question.

Before the measured phase the first client asks `--warmup` questions (the first answer loads SmolLM2 and
MiniLM). Every answer's latency (submit to final result) is recorded, with the server's own time for it
(retrieve + generate, from the stats panel), so queueing shows as the difference and the stretch the server
worked on it can be placed against the video load: answers are grouped by whether that stretch was before,
overlapping or after the load, and the report says how much of the load the answer queue was working through
(a queue held up by the load would do nothing while it runs) and how many answers started and finished inside
it. Errors: any exception, timeout or
non-empty notice. Mixed sessions: each answer is checked against the client's own document: the chat holds
exactly this client's questions, the indexed page count / cited pages / page shown are its document's, and
each retrieved passage is text of its own document (a passage found only in another client's document is a
violation; one found in no document is counted as "unverified"). The server's RSS (process and children) is
sampled every 0.5 s. Everything goes to 127.0.0.1; every request has a timeout and the whole run has a hard
deadline (`--seconds` + `--deadline-slack`), after which the server is killed.

Prints a markdown table, writes the numbers to OUT/demo_load.json and the table to OUT/demo_load.md, and exits
1 when there were errors or mixed sessions (or the video never became ready). The 1-hour video is written to
the temporary folder and deleted with it. By default the server gets a fresh cache folder (only the converted
SmolLM2 weights are shared with ~/.cache/longvlm), so the loads are cold: `--warm-cache` uses the user cache.
`--report-only` rewrites the table and the .md from a stored demo_load.json.
"""

from __future__ import annotations

import argparse
import datetime
import html
import importlib.util
import json
import os
import platform
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

SHARED = Path(os.environ.get("LONGVLM_SHARED_DATA", REPO.parent / "shared" / "data"))
DOCUMENTS = SHARED / "mmlongbench-doc" / "documents"
SAMPLES = SHARED / "mmlongbench-doc" / "samples.json"
VIDEO_SOURCE = SHARED / "media" / "dc_demo.mp4"
VIDEO_QUESTION = "What is shown on the screen?"
RSS_EVERY_S = 0.5
HOST = "127.0.0.1"


# -- inputs -----------------------------------------------------------------------------------------------
@dataclass
class Document:
    """A client's PDF: its questions and the whitespace-free text of each page (for the mixed-session check)."""

    path: Path
    questions: list[str]
    pages: list[str]  # normalised text layer of each page

    @property
    def name(self) -> str:
        return self.path.name

    @property
    def page_count(self) -> int:
        return len(self.pages)


def normalise(text: str) -> str:
    return re.sub(r"\s+", "", html.unescape(text))


def pick_documents(documents: Path, samples: Path, count: int) -> list[Document]:
    """`count` PDFs that need no OCR (every page has a usable text layer) and have questions in `samples`;
    distinct page counts first (so the page count alone tells documents apart), then any; each document's
    questions are its own (a question text asked of two documents is dropped from both)."""
    from longvlm.retrieval.page_text import needs_ocr
    from longvlm.ingest.pdf import PdfDocument

    by_doc: dict[str, list[str]] = {}
    for sample in json.loads(samples.read_text()):
        question = " ".join(str(sample.get("question", "")).split())
        if question:
            by_doc.setdefault(sample["doc_id"], [])
            if question not in by_doc[sample["doc_id"]]:
                by_doc[sample["doc_id"]].append(question)
    owners: dict[str, set[str]] = {}
    for doc_id, questions in by_doc.items():
        for q in questions:
            owners.setdefault(q, set()).add(doc_id)
    candidates = []
    for path in sorted(documents.glob("*.pdf")):
        questions = [q for q in by_doc.get(path.name, []) if len(owners[q]) == 1]
        if not questions:
            continue
        try:
            with PdfDocument(str(path)) as doc:
                layers = [doc.page_text(i) for i in range(doc.page_count)]
                if any(needs_ocr(len(t.split()), doc.image_coverage(i)) for i, t in enumerate(layers)):
                    continue
        except Exception:  # an unreadable file is simply not a candidate
            continue
        candidates.append(Document(path, questions, [normalise(t) for t in layers]))
    chosen, counts = [], set()
    for doc in candidates:  # distinct page counts first
        if len(chosen) < count and doc.page_count not in counts:
            chosen.append(doc)
            counts.add(doc.page_count)
    for doc in candidates:
        if len(chosen) < count and doc not in chosen:
            chosen.append(doc)
    if len(chosen) < count:
        raise SystemExit(f"only {len(chosen)} PDFs in {documents} have a text layer on every page and questions "
                         f"in {samples}; {count} are needed")
    return chosen


def _loop_video():
    spec = importlib.util.spec_from_file_location("longvlm_bench_long_video", REPO / "tests" / "long_video.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.loop_video


def place_video(media: Path, video: str | None, source: Path, minutes: float) -> tuple[Path, str]:
    """The video the video client loads, inside the server's media folder, and how it was made."""
    if video:
        target = media / Path(video).name
        try:
            os.link(video, target)
        except OSError:
            shutil.copyfile(video, target)
        return target, f"{Path(video).name} (given)"
    target = media / f"long_{minutes:g}min.mp4"
    _loop_video()(source, target, minutes * 60)
    return target, f"{source.name} looped to {minutes:g} min by stream copy"


def video_facts(path: Path) -> dict:
    import av

    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        duration = float(container.duration or 0) / 1e6
        return {"duration_s": round(duration, 1), "width": stream.codec_context.width,
                "height": stream.codec_context.height, "size_mb": round(path.stat().st_size / 1e6, 1)}


# -- the server -------------------------------------------------------------------------------------------
def free_port() -> int:
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])


def server_env(work: Path, warm_cache: bool) -> dict:
    env = dict(os.environ, HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1", GRADIO_ANALYTICS_ENABLED="False",
               GRADIO_TEMP_DIR=str(work / "gradio"), PYTHONUNBUFFERED="1")
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO), env.get("PYTHONPATH", "")) if p)
    if not warm_cache:  # cold OCR/embedding caches; the converted SmolLM2 weights (an install step) are shared
        cache = work / "cache"
        cache.mkdir()
        user = Path(os.environ.get("LONGVLM_CACHE") or Path.home() / ".cache" / "longvlm") / "models"
        if user.is_dir():
            (cache / "models").symlink_to(user, target_is_directory=True)
        env["LONGVLM_CACHE"] = str(cache)
    return env


def start_server(cwd: Path, port: int, env: dict, log_path: Path) -> subprocess.Popen:
    log = open(log_path, "wb")
    try:
        return subprocess.Popen([sys.executable, "-m", "longvlm.cli", "demo", "--host", HOST, "--port", str(port)],
                                cwd=cwd, env=env, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                start_new_session=True)
    finally:
        log.close()


def wait_ready(url: str, proc: subprocess.Popen, timeout_s: float, log_path: Path) -> float:
    """Seconds until `url` answers HTTP 200; SystemExit if the server exits or does not answer in time."""
    import httpx

    started = time.perf_counter()
    while time.perf_counter() - started < timeout_s:
        if proc.poll() is not None:
            raise SystemExit(f"the demo server exited with {proc.returncode}:\n{tail(log_path)}")
        try:
            if httpx.get(url, timeout=2.0).status_code == 200:
                return time.perf_counter() - started
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    raise SystemExit(f"the demo server did not answer {url} within {timeout_s:.0f} s:\n{tail(log_path)}")


def stop_server(proc: subprocess.Popen) -> None:
    """SIGTERM to the server's own process group (it was started in a new session), SIGKILL after 20 s."""
    if proc.poll() is not None:
        return
    for sig, wait_s in ((signal.SIGTERM, 20), (signal.SIGKILL, 10)):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            return
        try:
            proc.wait(wait_s)
            return
        except subprocess.TimeoutExpired:
            continue


def tail(path: Path, lines: int = 40) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""


class RssSampler(threading.Thread):
    """RSS of a process and its children, every `every_s` seconds, until `stop()`."""

    def __init__(self, pid: int, every_s: float = RSS_EVERY_S) -> None:
        super().__init__(daemon=True, name="rss-sampler")
        import psutil

        self.process = psutil.Process(pid)
        self.every_s = every_s
        self.samples: list[tuple[float, float]] = []  # (seconds since start, MiB)
        self.load1: list[float] = []  # the 1-minute load average at each sample
        self.started = time.perf_counter()
        self._halt = threading.Event()

    def rss_mib(self) -> float | None:
        import psutil

        try:
            procs = [self.process, *self.process.children(recursive=True)]
        except psutil.Error:
            return None
        total = 0
        for p in procs:
            try:
                total += p.memory_info().rss
            except psutil.Error:
                continue
        return total / 2**20

    def run(self) -> None:
        while not self._halt.is_set():
            value = self.rss_mib()
            if value is not None:
                self.samples.append((time.perf_counter() - self.started, value))
            self.load1.append(os.getloadavg()[0])
            self._halt.wait(self.every_s)

    def stop(self) -> None:
        self._halt.set()
        self.join(5)

    @property
    def peak_mib(self) -> float:
        return max((v for _, v in self.samples), default=0.0)

    def between(self, start_s: float, end_s: float) -> float:
        """Peak MiB over a window of benchmark time (`perf_counter` values)."""
        lo, hi = start_s - self.started, end_s - self.started
        return max((v for t, v in self.samples if lo <= t <= hi), default=0.0)


# -- clients ----------------------------------------------------------------------------------------------
LOAD_OUTPUTS = ("status", "gallery", "hint", "video", "page", "chat", "cites", "stats", "notice")
ASK_OUTPUTS = ("chat", "cites", "stats", "notice", "question", "video", "page")


@dataclass
class Shared:
    """What the client threads share: the timing origin, the deadline, and the run's records."""

    url: str
    deadline: float  # perf_counter value after which nothing new is started and waits end
    request_timeout_s: float
    load_timeout_s: float
    warmup_questions: int = 1
    t0: float = 0.0  # start of the question phase (perf_counter)
    stop_at: float = 0.0  # no new question is submitted after this
    go: threading.Event = field(default_factory=threading.Event)
    abort: threading.Event = field(default_factory=threading.Event)
    lock: threading.Lock = field(default_factory=threading.Lock)
    answers: list[dict] = field(default_factory=list)
    loads: list[dict] = field(default_factory=list)
    errors: list[dict] = field(default_factory=list)
    violations: list[dict] = field(default_factory=list)
    unverified_passages: int = 0
    passages_checked: int = 0
    warmup: dict = field(default_factory=dict)
    sample: dict = field(default_factory=dict)  # one answer's outputs, as the client got them
    video: dict = field(default_factory=dict)

    def timeout(self, wanted: float) -> float:
        return max(0.1, min(wanted, self.deadline - time.perf_counter()))

    def error(self, client: str, what: str, message: str) -> None:
        with self.lock:
            self.errors.append({"client": client, "what": what, "message": message[:500],
                                "at_s": round(time.perf_counter() - (self.t0 or time.perf_counter()), 2)})

    def violation(self, client: str, what: str, detail: str) -> None:
        with self.lock:
            self.violations.append({"client": client, "what": what, "detail": detail[:500]})


def make_client(shared: Shared):
    from gradio_client import Client

    return Client(shared.url, verbose=False, download_files=False, analytics_enabled=False,
                  httpx_kwargs={"timeout": 60.0})


def api_defaults(client, endpoint: str, given: int) -> list:
    """The default values of `endpoint`'s inputs after the first `given` ones, as the page shows them."""
    info = client.view_api(print_info=False, return_format="dict")["named_endpoints"][endpoint]
    values = []
    for param in info["parameters"][given:]:
        if not param.get("parameter_has_default"):
            raise SystemExit(f"{endpoint}: input {param.get('parameter_name') or param.get('label')!r} has no "
                             f"default in the app")
        values.append(param["parameter_default"])
    return values


def text_of(message: dict) -> str:
    content = message.get("content", "")
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return " ".join(part.get("text", "") if isinstance(part, dict) else str(part) for part in content)
    return str(content)


def notice_text(notice) -> str:
    return re.sub(r"<[^>]+>", "", notice or "").strip()


PASSAGE = re.compile(r"<b>\[p\.(\d+)\]</b>\s*(.*?)(?=<br><br><b>\[|</details>|$)", re.S)


def check_pdf_answer(doc: Document, others: list[Document], asked: list[str], out: dict, strict_history: bool,
                     shared: Shared, who: str) -> tuple[int, int]:
    """Record mixed-session violations of one answer; returns (passages checked, passages found in no
    document's text layer)."""
    chat = out["chat"] if isinstance(out["chat"], list) else []
    users = [text_of(m) for m in chat if m.get("role") == "user"]
    own = set(doc.questions)
    strangers = [u for u in users if u not in own]
    if strangers:
        shared.violation(who, "chat holds another session's question", repr(strangers[0]))
    elif strict_history and users != asked:
        shared.violation(who, "chat is not this session's conversation",
                         f"expected {len(asked)} questions, got {len(users)}")
    if not chat or chat[-1].get("role") != "assistant":
        shared.violation(who, "no answer in the chat", repr(chat[-1:]))
        return 0, 0
    reply = text_of(chat[-1])
    if "route: text" not in reply:
        shared.violation(who, "answer not from the text route", reply[-200:])
    cited = re.search(r"cited: ([^<]*)</sub>", reply)
    for page in re.findall(r"p\.(\d+)", cited.group(1) if cited else ""):
        if not 1 <= int(page) <= doc.page_count:
            shared.violation(who, "cites a page its document does not have", f"p.{page} of {doc.page_count}")
    unverified = 0
    passages = PASSAGE.findall(reply)
    for page, snippet in passages:
        # the excerpt as shown: the answer's span marked up, '… ' where text was left out at either end
        piece = normalise(re.sub(r"</?mark>", "", snippet).replace("… ", "").replace(" …", ""))[:120]
        page_i = int(page)
        if not piece:
            continue
        if 1 <= page_i <= doc.page_count and piece in doc.pages[page_i - 1]:
            continue
        if any(piece in text for text in doc.pages):
            continue
        holder = next((o.name for o in others if any(piece in text for text in o.pages)), None)
        if holder:
            shared.violation(who, "retrieved passage from another session's document", f"p.{page} of {holder}")
        else:
            unverified += 1
    indexed = re.search(r"Text indexed from ([\d,]+) pages", out["cites"] or "")
    if not indexed or int(indexed.group(1).replace(",", "")) != doc.page_count:
        shared.violation(who, "citations panel is not this document's",
                         f"{indexed.group(0) if indexed else 'no page count'} vs {doc.page_count} pages")
    stats_pages = re.search(r"pages / frames indexed</div><div>([\d,]+)", out["stats"] or "")
    if not stats_pages or int(stats_pages.group(1).replace(",", "")) != doc.page_count:
        shared.violation(who, "stats panel is not this document's",
                         f"{stats_pages.group(0) if stats_pages else 'no page count'} vs {doc.page_count} pages")
    page = out.get("page")
    label = page.get("label") if isinstance(page, dict) else None
    shown = re.match(r"Page (\d+)$", label or "")
    if shown and not 1 <= int(shown.group(1)) <= doc.page_count:
        shared.violation(who, "page viewer shows a page its document does not have", label)
    return len(passages), unverified


def server_seconds(stats: str) -> dict:
    """Retrieve and generate times of an answer (and their sum, "server_s"), from the stats panel."""
    found = {f"{name}_s": float(v) for name, v in re.findall(r"(retrieve|generate) ([\d.]+)s", stats or "")}
    return {**found, "server_s": round(sum(found.values()), 3) if found else None}


def pdf_client(index: int, doc: Document, others: list[Document], shared: Shared, loaded: threading.Barrier):
    from gradio_client import handle_file

    who = f"pdf{index}"
    client = None
    ok = False
    try:
        client = make_client(shared)
        load_args = api_defaults(client, "/load_input", 2)
        ask_args = api_defaults(client, "/ask", 1)
        started = time.perf_counter()
        job = client.submit(handle_file(str(doc.path)), "", *load_args, api_name="/load_input")
        out = dict(zip(LOAD_OUTPUTS, job.result(timeout=shared.timeout(shared.load_timeout_s)), strict=True))
        seconds = time.perf_counter() - started
        with shared.lock:
            shared.loads.append({"client": who, "document": doc.name, "pages": doc.page_count,
                                 "seconds": round(seconds, 3)})
        if "lv-notice-error" in (out["notice"] or "") or "ready" not in (out["status"] or ""):
            shared.error(who, "load", notice_text(out["notice"]) or "not ready")
        else:
            if html.escape(doc.name, quote=False) not in out["status"] or \
                    f"PDF · {doc.page_count:,} pages" not in out["status"] or "route: text" not in out["status"]:
                shared.violation(who, "load status is not this document's", notice_text(out["status"])[:200])
            ok = True
    except Exception as exc:  # noqa: BLE001 (every failure is a recorded error)
        shared.error(who, "load", f"{type(exc).__name__}: {exc}")
    if not ok:
        try:
            loaded.wait(timeout=shared.timeout(shared.load_timeout_s * 2))
        except threading.BrokenBarrierError:
            pass
        if client is not None:
            client.close()
        return
    asked: list[str] = []
    state = {"strict": True}

    def ask_once(question: str) -> dict | None:
        submitted = time.perf_counter()
        try:
            job = client.submit(question, *ask_args, api_name="/ask")
            out = dict(zip(ASK_OUTPUTS, job.result(timeout=shared.timeout(shared.request_timeout_s)), strict=True))
        except Exception as exc:  # noqa: BLE001
            shared.error(who, "ask", f"{type(exc).__name__}: {exc}")
            state["strict"] = False  # the server may still add this turn: from now on check ownership only
            return None
        done = time.perf_counter()
        record = {"client": who, "submit_s": round(submitted - (shared.t0 or submitted), 3),
                  "latency_s": round(done - submitted, 3), **server_seconds(out["stats"])}
        if out["notice"]:
            shared.error(who, "ask", notice_text(out["notice"]))
            record["error"] = True
            state["strict"] = False
        else:
            asked.append(question)
        checked, unverified = check_pdf_answer(doc, others, asked, out, state["strict"], shared, who)
        with shared.lock:
            shared.passages_checked += checked
            shared.unverified_passages += unverified
            if not shared.sample and not out["notice"]:
                shared.sample.update(client=who, document=doc.name, question=question,
                                     **{k: (v[:2000] if isinstance(v, str) else v) for k, v in out.items()
                                        if k in ("cites", "notice", "page")},
                                     chat_last=text_of(out["chat"][-1])[:3000] if out["chat"] else None)
        return record

    k = index  # clients start at different questions
    try:
        if index == 0 and shared.warmup_questions:  # the first answer loads SmolLM2 and MiniLM: not measured
            for _ in range(shared.warmup_questions):
                record = ask_once(doc.questions[k % len(doc.questions)])
                k += 1
                if record is not None:
                    shared.warmup.setdefault("latencies_s", []).append(record["latency_s"])
    finally:
        try:
            loaded.wait(timeout=shared.timeout(shared.load_timeout_s * 2))
        except threading.BrokenBarrierError:
            pass
    shared.go.wait(timeout=shared.timeout(shared.load_timeout_s))
    try:
        while time.perf_counter() < shared.stop_at and not shared.abort.is_set():
            record = ask_once(doc.questions[k % len(doc.questions)])
            k += 1
            if record is not None:
                with shared.lock:
                    shared.answers.append(record)
    finally:
        client.close()


def video_client(path: Path, shared: Shared, delay_s: float, ask: bool) -> None:
    who = "video"
    client = None
    info = shared.video
    try:
        shared.go.wait(timeout=shared.timeout(shared.load_timeout_s))
        if shared.abort.wait(timeout=max(0.0, min(delay_s, shared.deadline - time.perf_counter()))):
            return
        client = make_client(shared)
        load_args = api_defaults(client, "/load_input", 2)
        ask_args = api_defaults(client, "/ask", 1)
        info["load_start_s"] = round(time.perf_counter() - shared.t0, 3)
        started = time.perf_counter()
        job = client.submit(None, str(path), *load_args, api_name="/load_input")
        out = dict(zip(LOAD_OUTPUTS, job.result(timeout=shared.timeout(shared.load_timeout_s)), strict=True))
        ready = time.perf_counter()
        info["time_to_ready_s"] = round(ready - started, 3)
        info["ready_s"] = round(ready - shared.t0, 3)
        info["status"] = notice_text(out["status"])[:400]
        if "lv-notice-error" in (out["notice"] or "") or "ready" not in (out["status"] or ""):
            info["ready"] = False
            shared.error(who, "load", notice_text(out["notice"]) or "not ready")
            return
        info["ready"] = True
        if path.name not in out["status"] or "video · " not in out["status"]:
            shared.violation(who, "load status is not this video's", info["status"][:200])
        if 'data-jump="p:' in (out["cites"] or ""):
            shared.violation(who, "video session shows page citations", "")
        if not ask or shared.abort.is_set():
            return
        submitted = time.perf_counter()
        job = client.submit(VIDEO_QUESTION, *ask_args, api_name="/ask")
        out = dict(zip(ASK_OUTPUTS, job.result(timeout=shared.timeout(shared.request_timeout_s)), strict=True))
        info["answer_latency_s"] = round(time.perf_counter() - submitted, 3)
        info["answer_submit_s"] = round(submitted - shared.t0, 3)
        if out["notice"]:
            shared.error(who, "ask", notice_text(out["notice"]))
            return
        chat = out["chat"] if isinstance(out["chat"], list) else []
        users = [text_of(m) for m in chat if m.get("role") == "user"]
        if users != [VIDEO_QUESTION]:
            shared.violation(who, "chat is not this session's conversation", repr(users[:3]))
        reply = text_of(chat[-1]) if chat else ""
        info["answer"] = reply.split("\n")[0][:200]
        if re.search(r"cited: [^<]*\bp\.\d", reply) or 'data-jump="p:' in (out["cites"] or ""):
            shared.violation(who, "video answer cites pages", reply[-200:])
        indexed = re.search(r"Text indexed from [\d,]+ frames", out["cites"] or "")
        if not indexed:
            shared.violation(who, "citations panel is not this video's", (out["cites"] or "")[:200])
    except Exception as exc:  # noqa: BLE001
        shared.error(who, "video", f"{type(exc).__name__}: {exc}")
    finally:
        if client is not None:
            client.close()


# -- report -----------------------------------------------------------------------------------------------
def percentile(values: list[float], q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    rank = (len(ordered) - 1) * q
    lo = int(rank)
    hi = min(lo + 1, len(ordered) - 1)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (rank - lo)


def latency_summary(records: list[dict]) -> dict:
    values = [r["latency_s"] for r in records]
    server = [r["server_s"] for r in records if r.get("server_s") is not None]
    rounded = lambda v: None if v is None else round(v, 3)  # noqa: E731
    return {"answers": len(values), "p50_s": rounded(percentile(values, 0.5)),
            "p95_s": rounded(percentile(values, 0.95)), "max_s": rounded(max(values, default=None)),
            "mean_s": rounded(statistics.fmean(values)) if values else None,
            "server_p50_s": rounded(percentile(server, 0.5)), "server_max_s": rounded(max(server, default=None))}


def execution(record: dict) -> tuple[float, float]:
    """(start, end) of the server's work on an answer, in seconds from the question phase's start: it ends when
    the client gets the result and lasts at least its retrieve + generate time (so the start is an upper bound)."""
    end = record["submit_s"] + record["latency_s"]
    return end - (record.get("server_s") or 0.0), end


def load_window(video: dict) -> tuple[float, float] | None:
    start, ready = video.get("load_start_s"), video.get("ready_s")
    return (start, ready) if start is not None and ready is not None else None


def phase_of(record: dict, video: dict) -> str:
    """When the server worked on the answer: "before" the video load, "during" it (any overlap), or "after"."""
    window = load_window(video)
    start, end = execution(record)
    if window is None:
        return "before" if video.get("load_start_s") is None or end <= video["load_start_s"] else "during"
    if end <= window[0]:
        return "before"
    if start >= window[1]:
        return "after"
    return "during"


def answering_during_load(answers: list[dict], video: dict) -> dict:
    """How much the answer queue worked while the video loaded: if loads blocked answers, this would be ~0."""
    window = load_window(video)
    if window is None:
        return {"load_window_s": None, "answer_work_s": None, "share": None, "answers_finished": 0,
                "answers_inside": 0, "answers_spanning": 0}
    busy = sum(max(0.0, min(window[1], execution(r)[1]) - max(window[0], execution(r)[0])) for r in answers)
    length = window[1] - window[0]
    return {"load_window_s": round(length, 2), "answer_work_s": round(busy, 2),
            "share": round(busy / length, 3) if length > 0 else None,
            "answers_finished": sum(window[0] < execution(r)[1] < window[1] for r in answers),
            # started (after the load began) and finished before it was ready: could not have waited for it
            "answers_inside": sum(window[0] <= execution(r)[0] and execution(r)[1] < window[1] for r in answers),
            # running before the load began and still running when it was ready: neither waited for the other
            "answers_spanning": sum(execution(r)[0] <= window[0] and execution(r)[1] >= window[1] for r in answers)}


def plural(count: int, word: str) -> str:
    return f"{count} {word}{'' if count == 1 else 's'}"


def fmt(value, unit: str = "", digits: int = 2) -> str:
    if value is None:
        return "n/a"
    return f"{value:,.{digits}f}{unit}"


def render(result: dict) -> str:
    lat, video, machine = result["latency"], result["video"], result["machine"]
    lines = ["| clients | duration | answers | errors | mixed-session violations | p50 answer | p95 answer | "
             "max answer | video time-to-ready | peak server RSS | machine |",
             "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |",
             f"| {result['clients']} PDF + 1 video | {result['requested_seconds']:.0f} s asking "
             f"(+{max(0.0, result['duration_s'] - result['requested_seconds']):.0f} s to finish) | {lat['answers']} | "
             f"{len(result['errors'])} | {len(result['violations'])} | {fmt(lat['p50_s'], ' s')} | "
             f"{fmt(lat['p95_s'], ' s')} | {fmt(lat['max_s'], ' s')} | {fmt(video.get('time_to_ready_s'), ' s', 1)} "
             f"| {result['peak_server_rss_mib']:,.0f} MiB | {machine['cores']} cores, load avg "
             f"{machine['load_avg_start'][0]:.1f} → {machine['load_avg_end'][0]:.1f}"
             f"{' (busy)' if machine['busy'] else ''} |", "",
             "| server worked on the answer | answers | p50 answer | p95 answer | max answer | "
             "server time p50 (retrieve + generate) | server time max |",
             "| --- | --- | --- | --- | --- | --- | --- |"]
    for phase, label in (("before", "before the video load"), ("during", "while the video loaded"),
                         ("after", "after the video was ready")):
        s = result["by_phase"][phase]
        lines.append(f"| {label} | {s['answers']} | {fmt(s['p50_s'], ' s')} | {fmt(s['p95_s'], ' s')} | "
                     f"{fmt(s['max_s'], ' s')} | {fmt(s['server_p50_s'], ' s')} | {fmt(s['server_max_s'], ' s')} |")
    busy = result["answering_during_load"]
    if busy["load_window_s"] is not None:
        lines += ["", f"While the video loaded ({busy['load_window_s']:.1f} s), the server was working on answers "
                      f"for {busy['answer_work_s']:.1f} s of it ({100 * (busy['share'] or 0):.0f}%, counting "
                      f"retrieve + generate only); {plural(busy['answers_finished'], 'answer')} finished inside that "
                      f"window, {busy['answers_inside']} of them started after the load began."]
    return "\n".join(lines)


def explanation(result: dict) -> str:
    lat, video, phases = result["latency"], result["video"], result["by_phase"]
    during, after, before = phases["during"], phases["after"], phases["before"]
    busy = result["answering_during_load"]
    ready = video.get("time_to_ready_s")
    parts = [f"**What this shows.** {result['clients']} sessions asked about their own PDFs for "
             f"{result['requested_seconds']:.0f} s, back to back; {fmt(video.get('load_start_s'), ' s', 0)} in, one more "
             f"session loaded {video.get('description', 'a long video')} by local path, which took "
             f"{fmt(ready, ' s', 1)} to be ready."]
    if ready is None:
        parts.append("The video never became ready (see errors).")
    elif busy["answers_inside"]:
        parts.append(f"Loads do not block answers: {plural(busy['answers_inside'], 'answer')} "
                     f"{'was' if busy['answers_inside'] == 1 else 'were'} started and finished by the "
                     f"server while the video was loading, and the answer queue was working for "
                     f"{busy['answer_work_s']:.1f} of the {busy['load_window_s']:.1f} s of the load; with answers "
                     f"queued behind the load (the old behaviour) both would be ~0.")
    elif busy["share"] is not None and busy["share"] >= 0.5:
        spanning = (f"an answer the server had started before the load began was still running when the video "
                    f"was ready, so the load did not wait for the answer queue nor the queue for the load: they "
                    f"ran side by side (with one queue for both, one would have waited for the other). "
                    if busy["answers_spanning"] else "")
        parts.append(f"The answer queue kept working during the load ({busy['answer_work_s']:.1f} of "
                     f"{busy['load_window_s']:.1f} s); {spanning}On this run no answer both started and finished "
                     f"inside the window, though (the answers that overlapped it took up to "
                     f"{fmt(during['server_max_s'], ' s', 0)} of server time), so it does not show an answer that "
                     f"was asked after the load began and returned before it finished.")
    else:
        parts.append(f"The answer queue worked for only {fmt(busy['answer_work_s'], ' s', 1)} of the "
                     f"{fmt(busy['load_window_s'], ' s', 1)} load: answers look held up by the load (or the load "
                     f"was too short to tell).")
    if during["answers"] and (after["answers"] or before["answers"]):
        other = after if after["answers"] else before
        label = "after it" if after["answers"] else "before it"
        shared_with = ", which other work on this machine was using too" if result["machine"]["busy"] else ""
        parts.append(f"{'They are slowed, not stopped: a' if busy['answers_inside'] else 'A'}nswers the server "
                     f"worked on while the video loaded took p50 {fmt(during['server_p50_s'], ' s')} of server time "
                     f"(max {fmt(during['server_max_s'], ' s')}, {plural(during['answers'], 'answer')}) against p50 "
                     f"{fmt(other['server_p50_s'], ' s')} (max {fmt(other['server_max_s'], ' s')}, "
                     f"{plural(other['answers'], 'answer')}) {label}: the load and the answers share the "
                     f"{result['machine']['cores']} CPU cores{shared_with}.")
    parts.append(f"Answers are served one at a time by design (the \"answer\" queue), so with {result['clients']} "
                 f"clients asking back to back an answer's latency is mostly its wait behind the others: server "
                 f"time p50 {fmt(lat['server_p50_s'], ' s')} against p50 {fmt(lat['p50_s'], ' s')} from submit to "
                 f"result ({result['answers_per_minute']:.1f} answers/min).")
    parts.append(f"Mixed sessions: every answer was checked against its own client's document (chat history, "
                 f"indexed page count, cited pages, page shown, and the text of its {result['passages_checked']} "
                 f"retrieved passages); {len(result['violations'])} violations, {result['unverified_passages']} "
                 f"passages not matched to any document's text layer verbatim.")
    if result["machine"]["busy"]:
        m = result["machine"]
        others = ", ".join(dict.fromkeys(m["other_busy_processes_start"] + m["other_busy_processes_end"])) or "none"
        parts.append(f"Measured on a busy machine: the {m['cores']} cores were shared with other work (1-minute "
                     f"load average {m['load_avg_start'][0]:.1f} at the start; during the run mean "
                     f"{m['load1_during_run']['mean']} / max {m['load1_during_run']['max']}, of which this benchmark "
                     f"alone accounts for about {m['cores']}; other busy processes at the start and end: {others}), "
                     f"so absolute times are pessimistic.")
    return " ".join(parts)


def machine_info() -> dict:
    cpu = ""
    try:
        cpu = next((line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name")),
                   "")
    except OSError:
        pass
    return {"cores": os.cpu_count(), "cpu": cpu or platform.processor(), "python": platform.python_version(),
            "platform": platform.platform()}


def other_busy_processes(exclude: set[int], threshold: float = 20.0) -> list[str]:
    """Names (no arguments) of other processes using more than `threshold`% of a core over 1 s."""
    import psutil

    procs = []
    for p in psutil.process_iter(["pid"]):
        if p.pid in exclude:
            continue
        try:
            p.cpu_percent(None)
            procs.append(p)
        except psutil.Error:
            continue
    time.sleep(1.0)
    busy = []
    for p in procs:
        try:
            cpu = p.cpu_percent(None)
            if cpu > threshold:
                busy.append(f"{p.name()} ({cpu:.0f}%)")
        except psutil.Error:
            continue
    return sorted(busy, reverse=True)


def git_commit() -> str | None:
    try:
        return subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True, text=True,
                              timeout=10).stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        return None


# -- main -------------------------------------------------------------------------------------------------
def parse_args(argv):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=8, help="PDF clients (each its own session and PDF)")
    parser.add_argument("--seconds", type=float, default=120.0, help="how long the PDF clients ask questions")
    parser.add_argument("--documents", type=Path, default=DOCUMENTS, help="folder of PDFs")
    parser.add_argument("--samples", type=Path, default=SAMPLES, help="samples.json with doc_id and question")
    parser.add_argument("--video", default=None, help="video to load (default: VIDEO_SOURCE looped)")
    parser.add_argument("--video-source", type=Path, default=VIDEO_SOURCE)
    parser.add_argument("--video-minutes", type=float, default=60.0)
    parser.add_argument("--video-delay", type=float, default=10.0,
                        help="seconds into the question phase when the video load starts")
    parser.add_argument("--no-video-question", action="store_true", help="do not ask about the video")
    parser.add_argument("--warmup", type=int, default=1,
                        help="questions the first client asks before the measured phase (the first answer loads "
                             "the text route's models)")
    parser.add_argument("--request-timeout", type=float, default=300.0, help="seconds per answer")
    parser.add_argument("--load-timeout", type=float, default=600.0, help="seconds per load")
    parser.add_argument("--startup-timeout", type=float, default=300.0, help="seconds for the server to answer")
    parser.add_argument("--deadline-slack", type=float, default=900.0,
                        help="hard deadline: --seconds plus this (the server is killed then)")
    parser.add_argument("--warm-cache", action="store_true", help="let the server use the user's cache")
    parser.add_argument("--out-dir", type=Path, default=REPO / "bench" / "results")
    parser.add_argument("--report-only", action="store_true",
                        help="rewrite the table and demo_load.md from OUT/demo_load.json without running anything")
    parser.add_argument("--keep", action="store_true", help="keep the temporary folder (server log, video)")
    args = parser.parse_args(argv)
    if args.clients < 1 or args.seconds <= 0:
        parser.error("--clients must be >= 1 and --seconds > 0")
    return args


def run(args) -> dict:
    begin = time.perf_counter()
    deadline = begin + args.seconds + args.deadline_slack
    load_start = os.getloadavg()
    others_start = other_busy_processes({os.getpid()})
    docs = pick_documents(args.documents, args.samples, args.clients)
    work = Path(tempfile.mkdtemp(prefix="longvlm-demo-load-"))
    proc = None
    sampler = None
    watchdog = None
    shared = None
    try:
        made = time.perf_counter()
        video_path, video_desc = place_video(work, args.video, args.video_source, args.video_minutes)
        facts = video_facts(video_path)
        video_made_s = time.perf_counter() - made
        port = free_port()
        url = f"http://{HOST}:{port}/"
        log_path = work / "server.log"
        proc = start_server(work, port, server_env(work, args.warm_cache), log_path)

        def expire():  # the hard deadline: stop the server, so every wait ends
            if shared is not None:
                shared.abort.set()
            print(f"demo_load: hard deadline reached ({args.seconds + args.deadline_slack:.0f} s), stopping the "
                  f"server", file=sys.stderr)
            stop_server(proc)

        watchdog = threading.Timer(max(1.0, deadline - time.perf_counter()), expire)
        watchdog.daemon = True
        watchdog.start()
        sampler = RssSampler(proc.pid)
        sampler.start()
        startup_s = wait_ready(url, proc, min(args.startup_timeout, deadline - time.perf_counter()), log_path)
        idle_rss = sampler.rss_mib() or 0.0

        shared = Shared(url, deadline, args.request_timeout, args.load_timeout, args.warmup)
        shared.video["description"] = f"a {facts['duration_s'] / 60:.0f}-min {facts['width']}x{facts['height']} video"
        loaded = threading.Barrier(args.clients + 1)
        threads = [threading.Thread(target=pdf_client, args=(i, doc, [d for d in docs if d is not doc], shared,
                                                               loaded), name=f"pdf{i}", daemon=True)
                   for i, doc in enumerate(docs)]
        video_thread = threading.Thread(target=video_client, daemon=True, name="video",
                                        args=(video_path, shared, args.video_delay,
                                              not args.no_video_question))
        loads_started = time.perf_counter()
        for t in threads:
            t.start()
        try:
            loaded.wait(timeout=shared.timeout(args.load_timeout * 2))
        except threading.BrokenBarrierError:
            shared.error("bench", "load", "not every PDF client finished loading in time")
        loads_s = time.perf_counter() - loads_started
        rss_after_loads = sampler.rss_mib() or 0.0
        shared.t0 = time.perf_counter()
        shared.stop_at = shared.t0 + args.seconds
        video_thread.start()
        shared.go.set()
        for t in threads:
            t.join(timeout=max(0.1, deadline - time.perf_counter()))
        asked_s = time.perf_counter() - shared.t0
        video_thread.join(timeout=max(0.1, deadline - time.perf_counter()))
        if any(t.is_alive() for t in [*threads, video_thread]):
            shared.abort.set()
            shared.error("bench", "deadline", "clients still running at the hard deadline")
        end = time.perf_counter()
        sampler.stop()
        server_cpu = None
        try:
            times = sampler.process.cpu_times()
            server_cpu = round(times.user + times.system, 1)
        except Exception:  # noqa: BLE001
            pass
    finally:  # the server is always stopped first, whatever else fails
        if proc is not None:
            stop_server(proc)
        if watchdog is not None:
            watchdog.cancel()
        if sampler is not None:
            sampler.stop()
        server_log = tail(work / "server.log", 60)
        if args.keep:
            print(f"demo_load: kept {work}", file=sys.stderr)
        else:
            shutil.rmtree(work, ignore_errors=True)

    answers = sorted(shared.answers, key=lambda r: r["submit_s"])
    video = dict(shared.video, **facts, made_in_s=round(video_made_s, 1), source=video_desc)
    load_end = os.getloadavg()
    others_end = other_busy_processes({os.getpid(), proc.pid})
    cores = os.cpu_count() or 1
    machine = dict(machine_info(), load_avg_start=[round(v, 2) for v in load_start],
                   load_avg_end=[round(v, 2) for v in load_end],
                   load1_during_run={"mean": round(statistics.fmean(sampler.load1), 2) if sampler.load1 else None,
                                     "max": round(max(sampler.load1, default=0.0), 2)},
                   other_busy_processes_start=others_start, other_busy_processes_end=others_end,
                   busy=bool(others_start or others_end) or load_start[0] > 0.5 * cores)
    result = {
        "benchmark": "bench/demo_load.py",
        "date": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
        "commit": git_commit(),
        "command": None,
        "clients": args.clients, "duration_s": round(asked_s, 1), "requested_seconds": args.seconds,
        "documents": [{"client": f"pdf{i}", "name": d.name, "pages": d.page_count, "questions": len(d.questions)}
                      for i, d in enumerate(docs)],
        "server_pid": proc.pid, "work_dir": str(work) if not args.keep else f"{work} (kept)",
        "server_startup_s": round(startup_s, 1), "pdf_loads_total_s": round(loads_s, 1),
        "pdf_loads": sorted(shared.loads, key=lambda r: r["client"]),
        "video": video,
        "errors": shared.errors, "violations": shared.violations,
        "passages_checked": shared.passages_checked, "unverified_passages": shared.unverified_passages,
        "warmup": shared.warmup,
        "peak_server_rss_mib": round(sampler.peak_mib, 1),
        "server_rss_mib": {"idle": round(idle_rss, 1), "after_pdf_loads": round(rss_after_loads, 1),
                           "peak_during_video_load": round(sampler.between(
                               shared.t0 + video.get("load_start_s", 0), shared.t0 + video.get("ready_s", 0)), 1)
                           if video.get("ready_s") else None,
                           "timeline_every_5s": [round(v, 0) for t, v in sampler.samples[::10]]},
        "server_cpu_s": server_cpu,
        "wall_s": round(end - begin, 1),
        "machine": machine,
        "answers": answers,
        "sample_answer": shared.sample,
    }
    if shared.errors or shared.violations:
        result["server_log_tail"] = server_log
    return summarise(result)


def summarise(result: dict) -> dict:
    """Add the figures derived from the raw records (each answer's phase, latency summaries, how much the
    answer queue worked during the load); `--report-only` redoes this on a stored result."""
    answers, video = result["answers"], result["video"]
    for r in answers:
        r["phase"] = phase_of(r, video)
    derived = {"latency": latency_summary(answers),
               "answers_per_minute": round(60 * len(answers) / max(result["duration_s"], 1e-9), 2),
               "by_phase": {p: latency_summary([r for r in answers if r["phase"] == p])
                            for p in ("before", "during", "after")},
               "answering_during_load": answering_during_load(answers, video)}
    ordered = {}
    for key, value in result.items():  # the summaries go before the long lists
        if key not in derived:
            ordered[key] = value
        if key == "pdf_loads":
            ordered.update(derived)
    ordered.update({k: v for k, v in derived.items() if k not in ordered})
    return ordered


def main(argv=None) -> int:
    args = parse_args(argv)
    if args.report_only:
        result = summarise(json.loads((args.out_dir / "demo_load.json").read_text()))
    else:
        result = run(args)
        result["command"] = "python bench/demo_load.py " + " ".join(sys.argv[1:] if argv is None else argv)
    table = render(result)
    what = explanation(result)
    print(table)
    print()
    print(what)
    for e in result["errors"][:10]:
        print(f"error: {e['client']} {e['what']}: {e['message']}", file=sys.stderr)
    for v in result["violations"][:10]:
        print(f"mixed session: {v['client']} {v['what']}: {v['detail']}", file=sys.stderr)
    args.out_dir.mkdir(parents=True, exist_ok=True)
    (args.out_dir / "demo_load.json").write_text(json.dumps(result, indent=1) + "\n")
    m = result["machine"]
    documents = ", ".join(f"{d['name']} ({d['pages']} p.)" for d in result["documents"])
    header = (f"# Demo under load: {result['clients']} PDF sessions asking, 1 session loading a long video\n\n"
              f"`bench/demo_load.py` ({result['date']}, commit {result['commit']}), "
              f"`python -m longvlm.cli demo` on 127.0.0.1 with its shipped defaults, "
              f"{m['cores']} cores ({m['cpu']}), load average {m['load_avg_start'][0]:.2f} at the start"
              f"{' — measured on a busy machine (cores shared with other work)' if m['busy'] else ''}. "
              f"Documents: {documents}. "
              f"Video: {result['video'].get('source')}, {result['video'].get('width')}x"
              f"{result['video'].get('height')}, {result['video'].get('size_mb')} MB.\n\n")
    (args.out_dir / "demo_load.md").write_text(header + table + "\n\n" + what + "\n")
    video_ok = bool(result["video"].get("ready"))
    return 0 if not result["errors"] and not result["violations"] and video_ok and result["latency"]["answers"] \
        else 1


if __name__ == "__main__":
    sys.exit(main())
