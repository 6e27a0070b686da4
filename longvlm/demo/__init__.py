"""The Gradio demo: ask questions about a long video or PDF on your own machine (`longvlm demo`).

`session` holds one encoded input and its conversation (follow-ups reuse the encoding), `app` builds the
Blocks UI, `server.launch_demo` serves it. Gradio is imported only by `app` and `server`.
"""
