"""A team's VLM service as the seeds build it: Flask, ``POST /v1/vision/completion`` with a multipart ``image``
file field and a ``prompt`` form field (``max_new_tokens`` optional), answering ``{"result": ...}``; a 400 with a
JSON error for a bad request, a 500 when the model fails; ``GET /version`` says what model answers.

    python tests/services/flask_service.py --port 5000 --model tiny
"""

from __future__ import annotations

from flask import Flask, jsonify, request
from model import arguments, load, version

args = arguments(__doc__ or "")
answer = load(args.model, args.delay)
app = Flask(__name__)
served = {"requests": 0}


@app.before_request
def authorize():  # type: ignore[no-untyped-def]
    if args.api_key and request.path != "/stats" and request.headers.get("X-Api-Key") != args.api_key:
        return jsonify(error="missing or wrong X-Api-Key"), 401
    return None


@app.get("/version")
def model_version():  # type: ignore[no-untyped-def]
    return jsonify(model=args.model, version=version(args.model))


@app.get("/stats")
def stats():  # type: ignore[no-untyped-def]
    return jsonify(served)


@app.post("/v1/vision/completion")
def completion():  # type: ignore[no-untyped-def]
    served["requests"] += 1
    images = [f.read() for f in request.files.getlist("image")]
    prompt = request.form.get("prompt", "")
    if not images or not prompt.strip():
        return jsonify(error="an image file and a prompt are required"), 400
    if "leak" in prompt:  # a careless service echoing the request's headers in its error
        return jsonify(error=f"rejected request with headers {dict(request.headers)}"), 400
    try:
        limit = int(request.form.get("max_new_tokens", "32"))
        text = answer(images, prompt, [], request.form.get("system_prompt"), limit)
    except Exception as exc:  # the model failed: a 500 with its message, as such services do
        return jsonify(error=str(exc)), 500
    return jsonify(result=text)


if __name__ == "__main__":
    app.run(host="127.0.0.1", port=args.port, threaded=True)
