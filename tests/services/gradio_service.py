"""A Gradio demo in front of the model: an image and a question in, the answer out, API name ``/predict``.

python tests/services/gradio_service.py --port 7860 --model tiny
"""

from __future__ import annotations

import os
from pathlib import Path

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")

import gradio as gr
from model import arguments, load

args = arguments(__doc__ or "")
answer = load(args.model, args.delay)


def predict(image: str | None, question: str, max_new_tokens: float = 32) -> str:
    if not question:
        raise gr.Error("a question is required")
    images = [Path(image).read_bytes()] if image else []
    return answer(images, question, [], None, int(max_new_tokens))


demo = gr.Interface(
    fn=predict,
    inputs=[gr.File(label="image", type="filepath"), gr.Textbox(label="question"), gr.Number(value=32)],
    outputs=gr.Textbox(label="answer"),
    api_name="predict",
    flagging_mode="never",
)

if __name__ == "__main__":
    demo.queue(default_concurrency_limit=4).launch(
        server_name="127.0.0.1", server_port=args.port, show_error=True, quiet=True, ssr_mode=False
    )
