"""The JSON variant: FastAPI, ``POST /generate`` with ``{"inputs": {"images": [base64...], "prompt": ...,
"messages": [...]}, "parameters": {"max_new_tokens": N}}``, answering ``{"choices": [{"text": ...}]}``. It takes
the earlier turns of a dialogue (``inputs.messages``), so dialogues are tested through it.

    python tests/services/fastapi_service.py --port 8000 --model tiny
"""

from __future__ import annotations

import base64
from typing import Any

import uvicorn
from fastapi import Body, FastAPI, HTTPException
from model import arguments, load, version

args = arguments(__doc__ or "")
answer = load(args.model, args.delay)
app = FastAPI()


@app.get("/health")
def health() -> dict[str, str]:
    return {"status": "ok", "model_version": version(args.model)}


@app.post("/generate")
def generate(payload: dict[str, Any] = Body(...)) -> dict[str, Any]:  # noqa: B008 - FastAPI's idiom
    inputs = payload.get("inputs") or {}
    prompt = inputs.get("prompt")
    if not isinstance(prompt, str) or not prompt:
        raise HTTPException(status_code=422, detail="inputs.prompt is required")
    images = [base64.b64decode(data) for data in inputs.get("images") or []]
    messages = inputs.get("messages") or []
    history = [(messages[i]["content"], messages[i + 1]["content"]) for i in range(0, len(messages) - 1, 2)]
    limit = int((payload.get("parameters") or {}).get("max_new_tokens", 32))
    text = answer(images, prompt, history, inputs.get("system"), limit)
    return {"choices": [{"index": 0, "text": text}], "model": args.model}


if __name__ == "__main__":
    uvicorn.run(app, host="127.0.0.1", port=args.port, log_level="warning")
