"""Command line: `longvlm ask ...`, `longvlm info FILE`, `longvlm eval ...` and `longvlm demo` (the Gradio app)."""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import warnings
from collections.abc import Callable
from typing import NoReturn

from longvlm.compression import SHIPPED_COMPRESSORS, VISUAL_COMPRESSORS
from longvlm.errors import ConfigError, InputError, InputWarning, LongVLMError
from longvlm.excerpts import excerpt, plain
from longvlm.eval.niah import QUESTION_KINDS, SUITES
from longvlm.memory.loading import SHIPPED_BRIDGES, UNTRAINED_BRIDGE
from longvlm.memory.streaming import SELECT_MODES
from longvlm.options import DOWNSAMPLE_CHOICES
from longvlm.planning.planner import RESOLUTIONS
from longvlm.presses import DEFAULT_KV_BUDGET, MERGE_METHODS, NO_MERGE, PRESSES
from longvlm.routes import ROUTES
from longvlm.vlm.loading import PRESETS
from longvlm.vlm.rope import METHODS as ROPE_METHODS


def _default_model() -> str:
    from longvlm.vlm.loading import default_model

    return os.environ.get("LONGVLM_MODEL") or default_model()


class _Parser(argparse.ArgumentParser):
    """argparse whose errors are one line, `longvlm: error: ...` (exit 2), without the usage block."""

    def error(self, message: str) -> NoReturn:
        """Print `message` on one line and exit with status 2 (argparse calls this for bad arguments)."""
        self.exit(2, f"longvlm: error: {message} (see `{self.prog} --help`)\n")


def _number_type(convert: Callable[[str], float], accepts: Callable[[float], bool], expected: str):
    """An argparse type: `convert(text)` when `accepts` the value, else a one-line error saying what was
    expected (argparse prefixes the option's name)."""
    def parse(text: str):
        try:
            value = convert(text)
        except ValueError:
            value = None
        if value is None or not accepts(value):
            raise argparse.ArgumentTypeError(f"expected {expected}, got {text!r}")
        return value
    return parse


_positive_int = _number_type(int, lambda v: v >= 1, "a whole number of at least 1")
_positive_float = _number_type(float, lambda v: math.isfinite(v) and v > 0,
                               "a positive finite number (not 0, negative, nan or inf)")
_fraction = _number_type(float, lambda v: 0.0 <= v <= 1.0, "a number between 0 and 1")
_port = _number_type(int, lambda v: 0 <= v <= 65535, "a port number between 0 and 65535 (0: any free port)")
# --kv-budget: a ratio in (0, 1] ('0.2') or a token count >= 1 ('2048')
_kv_budget = _number_type(lambda t: float(t) if any(c in t for c in ".eE") else int(t),
                          lambda v: 0.0 < v <= 1.0 if isinstance(v, float) else v >= 1,
                          "a ratio in (0, 1] such as 0.2 or a token count such as 2048")


def _resolve_route(args: argparse.Namespace) -> str:
    """'auto': the VLM route when a model was given (--model or LONGVLM_MODEL) or an option only the VLM route
    has (`_vlm_only_options`), else the text route when its packages are installed, else the VLM route with the
    default model. 'text' with a VLM-only option is refused (ConfigError)."""
    vlm_options = _vlm_only_options(args)
    if args.route == "text" and vlm_options:
        verb = "does" if len(vlm_options) == 1 else "do"
        raise ConfigError(f"{', '.join(vlm_options)} {verb} not apply to the text route (no VLM reads the "
                          "pages/frames there); drop it or use --route vlm")
    from longvlm.routes import choose_route, text_route_missing

    route = choose_route(args.route, model_given=args.model_given, vlm_options=bool(vlm_options))
    if args.route == "auto" and route == "vlm" and not (args.model_given or vlm_options):
        print(f"note: no VLM checkpoint given and the text route is not installed "
              f"({', '.join(text_route_missing())}); using the VLM route", file=sys.stderr)
    return route


def _vlm_only_options(args: argparse.Namespace) -> list[str]:
    """The VLM-route options set on the command line (away from their defaults)."""
    given = {"--select": args.select, "--downsample": args.downsample != "1", "--compressor": args.compressor,
             "--compressor-weights": args.compressor_weights, "--kv-press": args.kv_press,
             "--kv-budget": args.kv_budget is not None, "--kv-merge": args.kv_merge, "--max-visual-tokens": args.max_visual_tokens is not None,
             "--rope-method": args.rope_method, "--rope-scale": args.rope_scale != 1.0,
             "--rope-train-length": args.rope_train_length is not None,
             "--video-resolution": args.video_resolution != "uniform", "--memory-bridge": args.memory_bridge}
    return [name for name, value in given.items() if value]


def _print_answer(result, args: argparse.Namespace, note: str = "", random_weights: bool = False) -> None:
    if args.json:
        print(json.dumps({"answer": result.text, "model": result.model, "route": result.route,
                          "random_weights": random_weights, "evidence": [e.__dict__ for e in result.evidence],
                          "passages": result.passages, "stats": result.stats}, indent=2))
        return
    if result.stats.get("abstained"):
        why = result.stats.get("abstain_reason", "")
        print(f"answer: {result.text!r} (not found in the document{': ' + why if why else ''})")
    else:
        print(f"answer: {result.text!r}")
    print(f"route: {result.route}  model: {result.model}{note}")
    print(f"evidence: {result.evidence_summary()}")
    if result.passages:
        marked = any(p.get("span") for p in result.passages)
        print("passages (retrieved, best first" + ("; »...« is the span the answer was taken from" if marked else "")
              + "):")
        for p in result.passages:
            print(f"  [{p['cite']}] {plain(excerpt(p['text'], p.get('span'), 300))}")
    for key, value in result.stats.items():
        if key != "notes":
            print(f"  {key:>22}: {value:.3f}" if isinstance(value, float) else f"  {key:>22}: {value}")
    for line in result.stats.get("notes", []):
        print(f"note: {line}")


def _ask(args: argparse.Namespace) -> int:
    from longvlm.limits import check_question

    args.question = check_question(args.question)  # before any model is loaded
    route = _resolve_route(args)
    if route == "text":
        from longvlm.retrieval.text_route import ask_text

        if args.model_given:
            raise ConfigError("--model names a VLM; the text route uses its own small LM (drop --model or use "
                               "--route vlm)")
        result = ask_text(args.question, pdf=args.pdf, video=args.video, images=args.image or None,
                          max_pages=args.max_pages, max_frames=args.max_frames, frame_every_s=1.0 / args.fps,
                          **({} if args.max_new_tokens is None else {"max_new_tokens": args.max_new_tokens}))
        _print_answer(result, args, "  (text route: no VLM read the pages/frames; the answer was taken from the "
                                    "retrieved passages with a 135M-parameter LM: check them)")
        return 0
    from longvlm.pipeline.ask import ask
    from longvlm.vlm.loading import load_vlm
    from longvlm.vlm.rope import apply_position_extension

    vlm = load_vlm(args.model)
    if args.rope_method is not None:
        apply_position_extension(vlm, args.rope_method, args.rope_scale, train_length=args.rope_train_length)
    source, kind = ((args.image, None) if args.image else (args.video, "video") if args.video else (args.pdf, "pdf"))
    result = ask(vlm, args.question, source, _options(args, vlm), kind=kind)
    note = "  (random-weight test model: the answer is meaningless)" if vlm.is_random else ""
    _print_answer(result, args, note, vlm.is_random)
    return 0


def _options(args: argparse.Namespace, vlm):
    """The VLM route's `Options` from the command line (the same builder as the demo and lmms-eval)."""
    from longvlm.options import build_options

    return build_options(vlm, memory_bridge=args.memory_bridge, memory_select=args.memory_select,
                         select=args.select, native_items=args.native_pages, compressor=args.compressor,
                         downsample=args.downsample, compressor_weights=args.compressor_weights,
                         kv_press=args.kv_press, kv_budget=args.kv_budget, kv_merge=args.kv_merge,
                         max_visual_tokens=args.max_visual_tokens,
                         max_new_tokens=args.max_new_tokens, sample_fps=args.fps, max_frames=args.max_frames,
                         max_pages=args.max_pages, video_resolution=args.video_resolution)


def _info(args: argparse.Namespace) -> int:
    from longvlm.ingest.kinds import detect_kind

    path = args.file
    kind = detect_kind(path)
    if kind == "image":
        from longvlm.ingest.images import image_size

        height, width = image_size(path)
        print(json.dumps({"type": "image", "path": path, "size": f"{width}x{height}"}, indent=2))
        return 0
    if kind == "pdf":
        from longvlm.ingest.pdf import PdfDocument

        with PdfDocument(path) as doc:
            with_text = sum(1 for i in range(doc.page_count) if doc.page_text(i).strip())
            h, w = doc.page_size(0, 144)
            info = {"type": "pdf", "path": path, "pages": doc.page_count, "pages_with_text_layer": with_text,
                    "first_page_px_at_144dpi": f"{w}x{h}",
                    "page_labels": [doc.page_label(i) for i in range(min(doc.page_count, 8))]}
            unusable = [i + 1 for i in range(doc.page_count) if not doc.page_usable(i)]
            if unusable:  # pages no model or OCR can read (aspect ratio): left out when asking
                info["pages_unusable"] = unusable
    else:
        from longvlm.ingest.video import read_video_metadata

        meta = read_video_metadata(path)
        info = {"type": "video", "path": path, "fps": round(meta.fps, 3), "frames": meta.num_frames,
                "duration_s": round(meta.duration, 3), "size": f"{meta.width}x{meta.height}"}
        if meta.truncated:  # the frames that decode; the header declares a longer video
            info.update(truncated=True, declared_duration_s=round(meta.declared_duration_s, 3))
    print(json.dumps(info, indent=2))
    return 0


def _demo(args: argparse.Namespace) -> int:
    from longvlm.demo.server import launch_demo

    launch_demo(args.model, host=args.host, port=args.port, max_upload_mb=args.max_upload_mb,
                media_dirs=args.media_dir or (), models_dirs=args.models_dir or ())
    return 0


def _eval_niah(args: argparse.Namespace) -> int:
    from longvlm.eval.sharding import Shard
    from longvlm.eval.niah import ClipHaystack, SuiteSpec, load_vniah_needles, run_suite
    from longvlm.vlm.loading import load_vlm
    from longvlm.vlm.rope import apply_position_extension

    vlm = load_vlm(args.model)
    if args.rope_method is not None:
        apply_position_extension(vlm, args.rope_method, args.rope_scale, train_length=args.rope_train_length)
    kwargs = {}
    if args.haystack:
        kwargs["haystack"] = ClipHaystack(args.haystack)
    if args.needles:
        kwargs["vniah_needles"] = load_vniah_needles(args.needles)
    spec = SuiteSpec(args.suite, args.lengths, args.depths, args.samples, args.seed, args.question)
    summary = run_suite(vlm, spec, args.out, scoring=args.scoring, **kwargs)
    if Shard.from_env().is_main:  # one summary, however many processes evaluated
        print(json.dumps({k: v for k, v in summary.items() if k != "cells"}, indent=2))
    return 0


def _eval_mmlongbench(args: argparse.Namespace) -> int:
    from longvlm.eval.sharding import Shard
    from longvlm.eval.extract import RULE_BASED_LABEL
    from longvlm.eval.mmlongbench_run import official_extractor, run_mmlongbench
    from longvlm.vlm.loading import load_vlm

    extractor, label = None, RULE_BASED_LABEL
    if args.extractor_model:
        from longvlm.eval.local_chat import load_chat_model

        prompt = args.extractor_prompt or os.path.join(args.data, "..", "eval", "prompt_for_answer_extraction.md")
        if not os.path.isfile(prompt):
            raise InputError(prompt, "the benchmark's extraction prompt was not found; pass --extractor-prompt")
        extractor = official_extractor(prompt, load_chat_model(args.extractor_model))
        label = f"official two-step extraction with {args.extractor_model}"
    vlm = load_vlm(args.model)
    results = run_mmlongbench(vlm, args.data, args.out, max_pages=args.max_pages, dpi=args.dpi,
                              max_visual_tokens=args.max_visual_tokens, min_tokens_per_page=args.min_tokens_per_page,
                              extractor=extractor, extractor_label=label, oracle=args.oracle, limit=args.limit)
    if Shard.from_env().is_main:
        print(json.dumps({k: v for k, v in results.items() if k not in ("evidence_sources", "doc_types")}, indent=2))
    return 0


def _eval_lmms_task(args: argparse.Namespace) -> int:
    from longvlm.eval.lmms_tasks import NIAH_TASK, TASK, write_mmlongbench_task, write_niah_task
    from longvlm.eval.niah import SuiteSpec

    if args.niah:
        spec = SuiteSpec("document", args.lengths, args.depths, args.samples, args.seed, args.question)
        folder, name, protocol = write_niah_task(spec, args.out), NIAH_TASK, "niah"
    else:
        folder, name, protocol = write_mmlongbench_task(args.data, args.out, args.limit), TASK, "mmlongbench"
    with open(folder / "samples.jsonl") as fh:
        questions = sum(1 for _ in fh)
    print(f"{folder}: {questions} questions. Run:\n  lmms-eval --model longvlm --model_args "
          f"pretrained=small,protocol={protocol} --tasks {name} --include_path {args.out} --output_path RESULTS")
    return 0


def _add_rope_arguments(parser: argparse.ArgumentParser) -> None:
    """--rope-method / --rope-scale / --rope-train-length (methods from `longvlm.vlm.rope.METHODS`)."""
    parser.add_argument("--rope-method", choices=ROPE_METHODS, default=None,
                        help="extend the context: mrope++ (M-RoPE++), or a baseline; with --rope-scale")
    parser.add_argument("--rope-scale", type=_positive_float, default=1.0,
                        help="extension factor s: the model then accepts s x its training length")
    parser.add_argument("--rope-train-length", type=_positive_int, default=None,
                        help="training length L the scale applies to (default: the model's max_position_embeddings)")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="longvlm", description="Questions about hour-long videos and long PDFs.")
    sub = parser.add_subparsers(dest="command", required=True)
    ask = sub.add_parser("ask", help="answer a question about a video, a PDF or images")
    source = ask.add_mutually_exclusive_group(required=True)
    source.add_argument("--video", help="video file")
    source.add_argument("--pdf", help="PDF file")
    source.add_argument("--image", action="append", help="image file (repeat for several)")
    ask.add_argument("--question", "-q", required=True)
    ask.add_argument("--model", default=None,
                     help=f"local model directory (Qwen2-VL, Qwen2.5-VL, Qwen3-VL, Qwen3.5, Kimi K2.5), or a preset: "
                          f"{', '.join(PRESETS)} (small: the shipped default; tiny*: random weights)")
    ask.add_argument("--max-visual-tokens", type=_positive_int, default=None,
                     help="vlm route: visual-token budget (default: what fits the model's context after the "
                          "prompt and the answer; a larger value is lowered to that, with a note)")
    ask.add_argument("--max-new-tokens", type=_positive_int, default=None,
                     help="answer length in tokens (default: 64, at most 1/8 of the model's context; lowered "
                          "with a note when the context is full)")
    ask.add_argument("--fps", type=_positive_float, default=1.0, help="video sampling rate before budgeting")
    ask.add_argument("--max-frames", type=_positive_int, default=None)
    ask.add_argument("--max-pages", type=_positive_int, default=None)
    ask.add_argument("--route", choices=ROUTES, default="auto",
                     help="vlm: a vision-language model reads the pages/frames; text: retrieval over page text/OCR "
                          "and a small pretrained LM (no VLM weights needed); auto (default): vlm when --model "
                          "(or LONGVLM_MODEL) is given, else text")
    ask.add_argument("--select", action="store_true",
                     help="vlm route: rank pages/frames against the question (BM25 + MiniLM over text/OCR); the "
                          "best get native resolution, the rest low resolution or none (composes with "
                          "--downsample and --kv-press)")
    ask.add_argument("--native-pages", type=_positive_int, default=4,
                     help="with --select: pages/frames at native resolution")
    ask.add_argument("--video-resolution", choices=RESOLUTIONS, default="uniform",
                     help="hybrid: GIRAFFE hybrid-resolution frames (groups of 4 temporal patches, the first at "
                          "high resolution, the rest at 1/3 of its tokens); auto: hybrid only when uniform "
                          "frames at 240 tokens do not fit the budget")
    _add_rope_arguments(ask)
    ask.add_argument("--downsample", choices=DOWNSAMPLE_CHOICES, default="1",
                     help="compress visual tokens k x k per frame/page with --compressor (default: average "
                          "pooling); auto: PDFs 1, video 2, long video 4")
    ask.add_argument("--compressor", choices=tuple(VISUAL_COMPRESSORS), default=None,
                     help="visual compressor for --downsample (default avgpool); oryx is trainable: the small model "
                          "uses its shipped trained one, other models start untrained (= average pooling) unless "
                          "--compressor-weights names trained weights")
    ask.add_argument("--compressor-weights", metavar="DIR", default=None,
                     help=f"a trained compressor saved with save_pretrained (oryx), or a shipped one: "
                          f"{', '.join(SHIPPED_COMPRESSORS)} (trained for the small model)")
    ask.add_argument("--kv-press", choices=tuple(PRESSES), default=None,
                     help="prune the KV cache at prefill with this method")
    ask.add_argument("--kv-budget", type=_kv_budget, default=None,
                     help=f"with --kv-press: KV tokens kept, a ratio (default {DEFAULT_KV_BUDGET}) or a count (2048)")
    ask.add_argument("--kv-merge", choices=(NO_MERGE, *MERGE_METHODS), default=None,
                     help="with --kv-press: merge each evicted KV pair into the most similar kept one (LOOK-M's "
                          "rules, for any press; *_reference: LOOK-M's released code, see docs/parity/presses.md); "
                          "none: evict only (default: lookm merges weighted_reference, others evict)")
    ask.add_argument("--memory-bridge", default=None,
                     help=f"video: stream through a memory bridge (a directory saved by training, "
                          f"{', '.join(map(repr, SHIPPED_BRIDGES))} for the one shipped with the small model, or "
                          f"{UNTRAINED_BRIDGE!r} for an untrained one); the model gets memory tokens + one segment")
    ask.add_argument("--memory-select", choices=SELECT_MODES, default="auto",
                     help="which segment goes with the memory: auto (a time named in the question, else the most "
                          "relevant), relevance, or last")
    ask.add_argument("--json", action="store_true", help="print a JSON record")
    ask.set_defaults(func=_ask)
    evaluate = sub.add_parser("eval", help="benchmarks: needle-in-a-haystack suites, MMLongBench-Doc")
    suites = evaluate.add_subparsers(dest="benchmark", required=True)
    niah = suites.add_parser("niah", help="multimodal needle-in-a-haystack over a length x depth grid")
    niah.add_argument("--suite", choices=SUITES, required=True)
    niah.add_argument("--model", default=None)
    niah.add_argument("--lengths", type=_positive_int, nargs="+", default=[8, 16, 32],
                      help="frames (video), images (image) or pages (document)")
    niah.add_argument("--depths", type=_fraction, nargs="+", default=[0.0, 0.25, 0.5, 0.75, 1.0])
    niah.add_argument("--samples", type=_positive_int, default=5, help="samples per cell")
    niah.add_argument("--seed", type=int, default=0)
    niah.add_argument("--question", choices=QUESTION_KINDS, default="page", help="document suite: what is asked")
    niah.add_argument("--haystack", nargs="*", help="video clips to loop as the haystack (default: procedural)")
    niah.add_argument("--needles", help="V-NIAH needle file (json with image paths, prompts, answers)")
    niah.add_argument("--scoring", choices=["generate", "teacher", "both"], default="both")
    _add_rope_arguments(niah)
    niah.add_argument("--out", required=True)
    niah.set_defaults(func=_eval_niah)
    mmlb = suites.add_parser("mmlongbench", help="MMLongBench-Doc with the official scoring rules")
    mmlb.add_argument("--data", required=True, help="folder with samples.json and documents/")
    mmlb.add_argument("--model", default=None)
    mmlb.add_argument("--out", required=True)
    mmlb.add_argument("--max-pages", type=_positive_int, default=120)
    mmlb.add_argument("--dpi", type=_positive_float, default=144.0)
    mmlb.add_argument("--max-visual-tokens", type=_positive_int, default=None,
                      help="default: what fits the model's context")
    mmlb.add_argument("--min-tokens-per-page", type=_positive_int, default=64)
    mmlb.add_argument("--limit", type=_positive_int, default=None, help="first N questions only")
    mmlb.add_argument("--oracle", action="store_true", help="feed only the evidence pages (NOT comparable)")
    mmlb.add_argument("--extractor-model", help="local chat model for the official two-step answer extraction")
    mmlb.add_argument("--extractor-prompt", help="the benchmark's eval/prompt_for_answer_extraction.md")
    mmlb.set_defaults(func=_eval_mmlongbench)
    task = suites.add_parser("lmms-task", help="write an lmms-eval task folder over local files: MMLongBench-Doc "
                                               "(--data) or the document needle suite (--niah)")
    task.add_argument("--out", required=True, help="folder to give lmms-eval as --include_path")
    what = task.add_mutually_exclusive_group(required=True)
    what.add_argument("--data", help="MMLongBench-Doc: folder with samples.json and documents/")
    what.add_argument("--niah", action="store_true", help="the document needle suite (--lengths/--depths/--samples)")
    task.add_argument("--limit", type=_positive_int, default=None, help="MMLongBench-Doc: first N questions only")
    task.add_argument("--lengths", type=_positive_int, nargs="+", default=[4, 8], help="needle suite: pages")
    task.add_argument("--depths", type=_fraction, nargs="+", default=[0.0, 0.5, 1.0])
    task.add_argument("--samples", type=_positive_int, default=2, help="needle suite: samples per cell")
    task.add_argument("--seed", type=int, default=0)
    task.add_argument("--question", choices=QUESTION_KINDS, default="page", help="needle suite: what is asked")
    task.set_defaults(func=_eval_lmms_task)
    info = sub.add_parser("info", help="metadata of a video or PDF")
    info.add_argument("file")
    info.set_defaults(func=_info)
    demo = sub.add_parser("demo", help="start the Gradio app: chat about a long video or PDF in the browser")
    demo.add_argument("--model", default=None,
                      help="local model directory (Qwen2-VL, Qwen2.5-VL, Qwen3-VL, Qwen3.5, Kimi K2.5) or a preset "
                           "(default: $LONGVLM_MODEL, else the shipped small model when installed, else the "
                           "random-weight tiny model)")
    demo.add_argument("--models-dir", action="append", metavar="DIR",
                      help="folder whose model directories (each with a config.json) clients may choose, by "
                           "folder name, besides the presets and --model (repeat for several)")
    demo.add_argument("--host", default="127.0.0.1", help="address to listen on (default: this machine only)")
    demo.add_argument("--port", type=_port, default=7860)
    demo.add_argument("--max-upload-mb", type=float, default=2048, help="largest accepted upload / local file")
    demo.add_argument("--media-dir", action="append", metavar="DIR",
                      help="folder whose files may be opened by local path (repeat for several; default: the "
                           "current folder, and only when listening on localhost)")
    demo.set_defaults(func=_demo)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run the command line; returns the exit status (2: bad arguments, a bad input file or setting)."""
    try:
        args = build_parser().parse_args(argv)
    except SystemExit as exc:  # --help (0) or a one-line argument error (2), already printed
        return exc.code if isinstance(exc.code, int) else 2
    args.model_given = getattr(args, "model", None) is not None or bool(os.environ.get("LONGVLM_MODEL"))
    if getattr(args, "model", "unset") is None:
        args.model = _default_model()
    from transformers.utils import logging as transformers_logging

    transformers_logging.disable_progress_bar()  # no "Loading weights" bars between the answer lines
    with warnings.catch_warnings():  # restores warnings.showwarning on the way out
        warnings.simplefilter("always", InputWarning)
        warnings.showwarning = _input_warning_printer(warnings.showwarning)
        try:
            return args.func(args)
        except LongVLMError as exc:
            print(f"longvlm: error: {' '.join(str(exc).split())}", file=sys.stderr)
            return 2


def _input_warning_printer(fallback):
    """A `warnings.showwarning` that prints each distinct `InputWarning` once, on one line, as
    `longvlm: warning: <file>: <problem>` (other warnings go to `fallback`)."""
    shown: set[str] = set()

    def show(message, category, filename, lineno, file=None, line=None) -> None:
        if not issubclass(category, InputWarning):
            fallback(message, category, filename, lineno, file, line)
        elif str(message) not in shown:
            shown.add(str(message))
            print(f"longvlm: warning: {' '.join(str(message).split())}", file=sys.stderr)

    return show


if __name__ == "__main__":
    sys.exit(main())
