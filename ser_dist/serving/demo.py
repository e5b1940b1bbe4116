"""``ser-dist demo MODEL``: a Gradio page for a trained model (a run directory, an export folder or a Hub id).

Upload or record a clip; the page shows the class probabilities as bars, the dimensions of a model that has
them, ``ser-dist predict --json``'s numbers for the clip, and for a recording longer than one window a
timeline and a table of the per-window (or per-segment) emotions. What a clip gives is
``ser_dist.serving.demo_results``; this module lays it out and serves it.

It binds to 127.0.0.1 unless ``--host`` says otherwise, and makes no network call: gradio's analytics and
version check are off, no share link, no server-side rendering. ``--max-seconds`` refuses a clip longer than
that, ``--max-file-mb`` an upload larger than that (gradio refuses it before it is stored). As a Hugging Face
Space, ``app.py`` is ``build_demo(EmotionClassifier.from_pretrained("owner/name")).launch()``.
"""

from __future__ import annotations

import math
import os
from pathlib import Path

from ..errors import UserError, first_line
from .demo_results import (
    DEFAULT_MAX_SECONDS,
    ClipResult,
    analyse_clip,
    dimension_rows,
    header_markdown,
    segment_rows,
    timeline_figure,
)
from .inference import EmotionClassifier

INSTALL = "ser-dist demo needs gradio: pip install 'ser-dist[demo]'"
MB = 1 << 20  # gradio's "Mb" in its message
# An upload of --max-seconds of 48 kHz 16-bit stereo WAV fits (plus 1 MB of headers): 0.183 MB a second.
WAV_MB_PER_SECOND = 48000 * 2 * 2 / MB


def require_gradio():
    """The gradio module with its telemetry off (set before it is first imported), or one line naming the extra."""
    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
    os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
    try:
        import gradio
    except ImportError:
        raise UserError(INSTALL) from None
    return gradio


def default_max_file_mb(max_seconds: float) -> float:
    return math.ceil(max_seconds * WAV_MB_PER_SECOND) + 1


def check_address(host: str, port: int) -> None:
    """Fail before the model loads when HOST:PORT cannot be served: a name that does not resolve, an address that is
    not this machine's, a port another program holds (uvicorn would log its error and gradio blame the port)."""
    import socket

    try:
        family, kind, _, _, address = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0]
    except (socket.gaierror, UnicodeError) as err:
        reason = getattr(err, "strerror", None) or str(err)
        raise UserError(
            f"--host {host}: not a name or address of this machine ({reason}); give 127.0.0.1, 0.0.0.0 or one of its addresses"
        ) from None
    with socket.socket(family, kind) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as uvicorn binds: a port left in TIME_WAIT is free
        try:
            probe.bind(address)
        except OSError as err:
            raise UserError(
                f"--host {host} --port {port}: cannot serve there ({err.strerror}); give a free --port or another --host"
            ) from None


def build_demo(classifier: EmotionClassifier, max_seconds: float = DEFAULT_MAX_SECONDS, *, source: str | None = None, **predict_options):
    """The page (a ``gr.Blocks``) for ``classifier``. ``max_seconds``: the longest clip it takes; ``source``: the
    model's name in the header; ``predict_options``: ``EmotionClassifier.predict``'s (``window_seconds``, ...)."""
    gr = require_gradio()
    if not (isinstance(max_seconds, (int, float)) and math.isfinite(max_seconds) and max_seconds > 0):
        raise UserError(f"--max-seconds {max_seconds}: give a finite number of seconds > 0")
    classifier._window_samples(predict_options.get("window_seconds"), predict_options.get("hop_seconds"))  # a bad window fails now
    labels, dimensions = classifier.labels, classifier.dimensions
    source = source or str(classifier.meta.get("experiment", {}).get("name") or "model")

    def predict(path):
        try:
            result = analyse_clip(classifier, path, max_seconds, **predict_options)
        except Exception as err:  # never a traceback on the page: the reason, and the page goes on working
            reason = first_line(err, 300)
            result = ClipResult(f"Could not predict `{Path(str(path)).name}`: {type(err).__name__}: {reason}")
        prediction, segments = result.prediction, result.segments
        if path is not None and prediction is None:
            gr.Warning(result.status)
        segments = segments if labels else []  # a model of dimensions alone has no label to put on the timeline
        return (
            result.status,
            gr.update(value=prediction.probabilities if prediction and labels else None),
            gr.update(value=dimension_rows(prediction)),
            gr.update(value=timeline_figure(segments, labels) if segments else None, visible=bool(segments)),
            gr.update(value=segment_rows(segments), visible=bool(segments)),
            result.as_json(),
        )

    # delete_cache: uploads and recordings older than an hour are deleted, checked every hour
    with gr.Blocks(title=f"ser-dist demo: {source}", analytics_enabled=False, delete_cache=(3600, 3600)) as demo:
        gr.Markdown(
            header_markdown(
                classifier,
                source,
                max_seconds,
                predict_options.get("window_seconds"),
                predict_options.get("hop_seconds"),
                predict_options.get("segment", "windows"),
            ),
            elem_id="header",
        )
        with gr.Row():
            with gr.Column():
                audio = gr.Audio(sources=["upload", "microphone"], type="filepath", label="Clip (upload or record)", elem_id="clip")
                button = gr.Button("Predict", variant="primary", elem_id="predict")
                status = gr.Markdown("Upload or record a clip.", elem_id="status")
            with gr.Column():
                bars = gr.Label(
                    num_top_classes=len(labels) or None, label="Class probabilities", visible=bool(labels), elem_id="probabilities"
                )
                dims = gr.Dataframe(
                    headers=["dimension", "value"], label="Dimensions", visible=bool(dimensions), interactive=False, elem_id="dimensions"
                )
        timeline = gr.Plot(label="Timeline", visible=False, elem_id="timeline")
        table = gr.Dataframe(
            headers=["start (s)", "end (s)", "label", "confidence"], label="Segments", visible=False, interactive=False, elem_id="segments"
        )
        exact = gr.JSON(label="The numbers (as ser-dist predict --json)", open=True, elem_id="prediction-json")
        outputs = [status, bars, dims, timeline, table, exact]
        for event in (button.click, audio.upload, audio.stop_recording):  # one clip at a time, whichever started it
            event(predict, inputs=audio, outputs=outputs, concurrency_id="predict", concurrency_limit=1)
    return demo


QUEUE_SIZE = 16  # clips waiting for the model at most (demo.queue's max_size)


def launch_demo(
    model: str,
    host: str = "127.0.0.1",
    port: int = 7860,
    max_seconds: float = DEFAULT_MAX_SECONDS,
    *,
    max_file_mb: float | None = None,
    revision: str | None = None,
    device: str | None = None,
    **predict_options,
) -> None:
    """Serve ``build_demo`` for ``model`` at http://HOST:PORT until interrupted (gradio is checked before the model loads)."""
    require_gradio()
    max_file_mb = default_max_file_mb(max_seconds) if max_file_mb is None else max_file_mb
    if not (math.isfinite(max_file_mb) and max_file_mb > 0):
        raise UserError(f"--max-file-mb {max_file_mb}: give a finite number of megabytes > 0")
    check_address(host, port)
    classifier = EmotionClassifier.from_pretrained(model, device=device, revision=revision)
    demo = build_demo(classifier, max_seconds, source=str(model), **predict_options)
    demo.queue(max_size=QUEUE_SIZE)  # one clip is scored at a time; more waiting than this are told to retry
    if host not in ("127.0.0.1", "localhost", "::1"):
        print(
            f"ser-dist demo: --host {host} serves every client that can reach it, with no login; bind 127.0.0.1 to keep it local",
            flush=True,
        )
    try:
        _, url, _ = demo.launch(
            server_name=host,
            server_port=port,
            share=False,
            ssr_mode=False,
            max_file_size=int(max_file_mb * MB),
            show_error=False,
            quiet=True,
            prevent_thread_lock=True,
        )
    except OSError as err:  # the port is taken, or the host is not an address of this machine
        reason = first_line(err, None).split(". You can")[0]
        raise UserError(f"--host {host} --port {port}: cannot serve there ({reason}); give a free --port or another --host") from None
    print(
        f"ser-dist demo: {model} at {url.rstrip('/')} (clips up to {max_seconds:g} s, uploads up to {max_file_mb:g} MB; Ctrl+C stops it)",
        flush=True,
    )
    demo.block_thread()
