"""Start the demo server: `longvlm demo` and the tests call `launch_demo`."""

from __future__ import annotations

import ipaddress
import os
import socket
from collections.abc import Sequence

from longvlm.demo.app import CSS, DEFAULT_MAX_UPLOAD_MB, DemoConfig, build_demo
from longvlm.demo.models import ModelPool
from longvlm.errors import ConfigError


def is_loopback(host: str) -> bool:
    """True for 127.0.0.1 / ::1 / localhost (the app then accepts local file paths without --media-dir)."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port nobody listens on right now."""
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def offline_theme():
    """Gradio's default look with system fonts: nothing is fetched from the internet."""
    import gradio as gr

    return gr.themes.Default(font=("ui-sans-serif", "system-ui", "sans-serif"),
                             font_mono=("ui-monospace", "SFMono-Regular", "monospace"))


def launch_demo(model: str | None = None, *, host: str = "127.0.0.1", port: int | None = None,
                max_upload_mb: float = DEFAULT_MAX_UPLOAD_MB, media_dirs: Sequence[str] = (),
                models_dirs: Sequence[str] = (), pool: ModelPool | None = None, block: bool = True,
                quiet: bool = False):
    """Load the model (default: the offline preset) and serve the app on host:port.

    Clients choose models only among the presets, `model` and the model directories inside `models_dirs`.
    Local file paths are accepted inside `media_dirs` (default: the current folder), and only when the server
    listens on a loopback address or `media_dirs` were given; files there are read, never served: the app
    serves only the copies and renders it makes for a session. With `block=False` the server runs in a
    background thread and the Blocks object is returned (call `.close()` to stop it).
    """
    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")

    if not max_upload_mb > 0:
        raise ConfigError(f"--max-upload-mb must be positive, got {max_upload_mb}")
    dirs = tuple(os.path.abspath(os.path.expanduser(d)) for d in media_dirs)
    for d in dirs:
        if not os.path.isdir(d):
            raise ConfigError(f"--media-dir {d}: not a folder")
    pool = pool or ModelPool(model, models_dirs=models_dirs)
    config = DemoConfig(max_upload_mb=max_upload_mb, media_dirs=dirs, allow_local_paths=is_loopback(host) or bool(dirs))
    demo = build_demo(pool, config)
    demo.queue(default_concurrency_limit=1)  # one load at a time ("ingest"), one answer at a time ("answer")
    demo.launch(server_name=host, server_port=port, max_file_size=int(max_upload_mb * 1024 * 1024),
                prevent_thread_lock=not block, quiet=quiet, ssr_mode=False, theme=offline_theme(), css=CSS,
                footer_links=["api"])
    return demo
