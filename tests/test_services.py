"""Services: a team's own HTTP route (http://) or Gradio app (gradio://) in front of a model, asked as the
endpoint description (--vl-endpoint) says.

Real servers on 127.0.0.1 (tests/services/: the seed-shaped Flask multipart app, a FastAPI JSON variant, a Gradio
interface), each started in its own process group and stopped in a ``finally``; ``echo`` servers (no model) for
the protocol and error tests, the built-in model for the round trips whose answers must equal the in-process
model's. Request counts and times are bounded.
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from pytest_vleval.backends.base import Conversation
from pytest_vleval.backends.managed import stop_process_group
from pytest_vleval.backends.service import service_request, unsupported_by
from pytest_vleval.backends.service_spec import (
    DescriptionError,
    answer_at,
    expand_headers,
    parse_description,
    read_description,
)

from .conftest import make_png

SERVICES = Path(__file__).parent / "services"
REPO = Path(__file__).resolve().parents[1]
SECRET = "svc-key-8c1d2e-never-on-disk"

SEED = """
body: multipart
image: image
question: prompt
max_tokens: max_new_tokens
answer: result
family: Qwen3-VL
"""

SAY_SUITE = """
defaults: {scorer: exact, max_new_tokens: 8}
cases:
  - {id: one, image: images/red.png, question: 'say: red', expected: red}
  - {id: flaky, image: images/blue.png, question: 'say: flaky', expected: flaky}
  - {id: leak, image: images/red.png, question: 'say: leak', expected: leak}
  - id: dialogue
    image: images/red.png
    turns:
      - {question: 'say: circle', expected: circle}
      - {question: 'say: blue echo history', expected: 'blue say: circle -> circle'}
"""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _get(url: str, timeout: float = 2.0) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as reply:
            return reply.status, reply.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


@contextlib.contextmanager
def running(script: str, *args: str, log: Path, timeout: float = 120.0) -> Iterator[str]:
    """``tests/services/<script>`` on a free loopback port until the block ends (its process group is stopped
    then, whatever happened): yields its origin once it answers HTTP."""
    port = free_port()
    env = {**os.environ, "GRADIO_ANALYTICS_ENABLED": "False", "NO_PROXY": "127.0.0.1,localhost"}
    with log.open("wb") as out:
        process = subprocess.Popen(
            [sys.executable, str(SERVICES / script), "--port", str(port), *args],
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            env=env,
        )
    origin = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + timeout
        while True:
            if process.poll() is not None:
                pytest.fail(f"{script} exited with {process.returncode}:\n{log.read_text()[-3000:]}")
            with contextlib.suppress(OSError):
                _get(origin + "/", timeout=1)
                break
            if time.monotonic() > deadline:
                pytest.fail(f"{script} did not answer within {timeout:g} s:\n{log.read_text()[-3000:]}")
            time.sleep(0.2)
        yield origin
    finally:
        stop_process_group(process, grace=10.0)


def requests_served(origin: str) -> int:
    return int(json.loads(_get(origin + "/stats")[1])["requests"])


@pytest.fixture(scope="module")
def flask_echo(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with running("flask_service.py", log=tmp_path_factory.mktemp("flask") / "log") as origin:
        yield origin


@pytest.fixture
def project(pytester: pytest.Pytester) -> pytest.Pytester:
    make_png(pytester.path / "images" / "red.png")
    make_png(pytester.path / "images" / "blue.png", color=(20, 20, 220))
    pytester.makefile(".yaml", test_say=SAY_SUITE)
    (pytester.path / "service.yaml").write_text(SEED)
    return pytester


def seed_url(origin: str) -> str:
    return origin + "/v1/vision/completion"


# --- the description ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "text, message",
    [
        ("question: prompt\nimgae: image\n", "unknown key 'imgae' (known: method, body, image, question"),
        ("image: image\nanswer: result\n", "question: required"),
        ("body: json\nimage: {field: image, as: file}\nquestion: q\n", "image.as: file needs body: multipart"),
        ("body: xml\nquestion: q\n", "body: 'xml' is not one of json, multipart, form"),
        ("question: q\nheaders: {X-Api-Key: abc123}\n", "headers.X-Api-Key: a credential must not be written"),
        ("question: q\nfamily: Qwen9\n", "family: 'Qwen9' is not a known family"),
        ("question: q\nidentity: {url: /v, path: a, hedaer: x}\n", "identity: unknown key 'hedaer'"),
        ("question: [q\n", "not valid YAML (line 2)"),
    ],
)
def test_a_broken_description_is_one_usage_error_naming_file_and_key(
    pytester: pytest.Pytester, text: str, message: str
) -> None:
    (pytester.path / "service.yaml").write_text(text)
    with pytest.raises(DescriptionError, match=None) as info:
        read_description("service.yaml", pytester.path)
    assert message in str(info.value) and str(pytester.path / "service.yaml") in str(info.value)
    result = pytester.runpytest("--vl-model=http://127.0.0.1:9/predict", "--vl-endpoint=service.yaml")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    assert "Traceback" not in result.stderr.str()
    result.stderr.fnmatch_lines([f"*--vl-endpoint: *service.yaml: *{message}*"])


def test_a_service_without_a_description_is_a_usage_error(pytester: pytest.Pytester) -> None:
    result = pytester.runpytest("--vl-model=http://127.0.0.1:9/predict")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*a service needs an endpoint description: --vl-endpoint=service.yaml*"])
    result = pytester.runpytest("--vl-model=http://user:pw@127.0.0.1:9/predict", "--vl-endpoint={question: q}")
    assert result.ret == pytest.ExitCode.USAGE_ERROR and "pw" not in result.stderr.str().replace("password", "")


def test_headers_take_secrets_from_the_environment_only() -> None:
    description = parse_description(
        {"question": "q", "headers": {"Authorization": "Bearer ${SVC_TOKEN}", "X-Team": "vision"}}, "s.yaml"
    )
    assert expand_headers(description, {"SVC_TOKEN": "t0k"}) == {"Authorization": "Bearer t0k", "X-Team": "vision"}
    with pytest.raises(KeyError, match="SVC_TOKEN"):
        expand_headers(description, {})
    assert "t0k" not in description.canonical() and "${SVC_TOKEN}" in description.canonical()


def test_answer_paths() -> None:
    reply = {"result": "a", "choices": [{"message": {"content": "b"}}], "boxes": [[1, 2, 3, 4]]}
    assert answer_at(reply, "result") == "a"
    assert answer_at(reply, "choices.0.message.content") == "b"
    assert answer_at(("x", "y"), "1") == "y"
    assert answer_at(reply, None) is reply
    with pytest.raises(LookupError, match="content"):
        answer_at({"choices": [{"message": {}}]}, "choices.0.message.content")


def test_request_shapes(tmp_path: Path) -> None:
    red = make_png(tmp_path / "red.png")
    blue = make_png(tmp_path / "blue.png", color=(0, 0, 255))
    conv = Conversation(
        images=(red, blue), question="What?", history=(("Q1", "A1"),), system="Be brief.", max_new_tokens=7
    )
    multipart = parse_description(
        {"body": "multipart", "image": {"field": "image", "several": True}, "question": "prompt",
         "max_tokens": "max_new_tokens", "history": "history", "system": "system", "fields": {"temperature": 0}},
        "m.yaml",
    )  # fmt: skip
    request = service_request(multipart, conv)
    assert [(name, part[1]) for name, part in request["files"]] == [
        ("image", red.read_bytes()),
        ("image", blue.read_bytes()),
    ]  # the files as they are, field repeated
    assert request["data"] == {
        "temperature": "0",
        "prompt": "What?",
        "system": "Be brief.",
        "max_new_tokens": "7",
        "history": json.dumps([{"role": "user", "content": "Q1"}, {"role": "assistant", "content": "A1"}]),
    }
    nested = parse_description(
        {"image": {"field": "inputs.images", "several": True}, "question": "inputs.prompt",
         "max_tokens": "parameters.max_new_tokens", "fields": {"parameters": {"do_sample": False}}},
        "j.yaml",
    )  # fmt: skip
    body = service_request(nested, Conversation(images=(red,), question="Hi", max_new_tokens=5))["json"]
    assert body["parameters"] == {"do_sample": False, "max_new_tokens": 5}
    assert body["inputs"]["prompt"] == "Hi" and base64.b64decode(body["inputs"]["images"][0]) == red.read_bytes()
    data_url = parse_description({"body": "form", "image": {"field": "img", "as": "data_url"}, "question": "q"}, "f")
    form = service_request(data_url, Conversation(images=(red,), question="Hi"))["data"]
    assert form["img"].startswith("data:image/png;base64,") and form["q"] == "Hi"
    # What a described service cannot take is said, not sent.
    assert "stateless" in (unsupported_by(data_url, conv) or "")
    single = Conversation(images=(red, blue), question="x")
    assert "takes one (image.several: false)" in (unsupported_by(data_url, single) or "")


# --- the seed-shaped Flask service (echo) ---------------------------------------------------------------------


def test_seed_shaped_service_retries_a_500_fails_a_400_alone_and_skips_dialogues(
    project: pytest.Pytester, flask_echo: str
) -> None:
    before = requests_served(flask_echo)
    result = project.runpytest(f"--vl-model={seed_url(flask_echo)}", "--vl-endpoint=service.yaml", "-rA", "-v")
    result.assert_outcomes(passed=2, failed=1, skipped=1)
    result.stdout.fnmatch_lines(
        [
            "*test_say.yaml::one?completion? PASSED*",
            "*test_say.yaml::flaky?completion? PASSED*",  # HTTP 500 once, then retried
            f"*POST {seed_url(flask_echo)}: HTTP 400: rejected request with headers*",
            f"*model completion (HTTP service, {flask_echo}, served*): 2/3*",
            "SKIPPED ?1? test_say.yaml:6: model completion: a dialogue: the service is stateless as described "
            "(*service.yaml has no history: field*",
        ]
    )
    assert requests_served(flask_echo) - before == 4  # one, flaky twice, leak (a 400 is not retried)


def test_inline_description_in_the_ini_file(project: pytest.Pytester, flask_echo: str) -> None:
    project.makeini(
        "[pytest]\nvl_endpoint = {body: multipart, image: image, question: prompt, answer: result}\n"
        f"vl_models = {seed_url(flask_echo)}\n"
    )
    result = project.runpytest("-k", "one")
    result.assert_outcomes(passed=1)


def test_a_slow_service_times_out_that_case_alone(project: pytest.Pytester, flask_echo: str) -> None:
    project.makefile(
        ".yaml",
        test_say="""
defaults: {scorer: exact}
cases:
  - {id: slow, image: images/red.png, question: 'say: slow', expected: slow}
  - {id: quick, image: images/red.png, question: 'say: quick', expected: quick}
""",
    )
    started = time.perf_counter()
    result = project.runpytest(
        f"--vl-model={seed_url(flask_echo)}", "--vl-endpoint=service.yaml", "--vl-request-timeout=1"
    )
    result.assert_outcomes(passed=1, failed=1)
    result.stdout.fnmatch_lines(["*: no answer within 1 s (--vl-request-timeout=1)*"])
    assert time.perf_counter() - started < 30


def test_a_service_that_is_down_fails_fast_naming_the_url(project: pytest.Pytester) -> None:
    url = f"http://127.0.0.1:{free_port()}/v1/vision/completion"
    started = time.perf_counter()
    result = project.runpytest(f"--vl-model={url}", "--vl-endpoint=service.yaml")
    assert time.perf_counter() - started < 20
    result.assert_outcomes(failed=4)
    result.stdout.fnmatch_lines([f"*could not be loaded: no service answers at {url} (probing it: GET*is it running?*"])
    assert "Traceback" not in result.stdout.str()


def test_a_secret_header_is_sent_and_never_on_disk(project: pytest.Pytester, tmp_path: Path, monkeypatch) -> None:
    (project.path / "service.yaml").write_text(
        SEED + 'headers: {X-Api-Key: "${SERVICE_KEY}"}\nidentity: {url: /version, path: version}\n'
    )
    args = [
        "--vl-endpoint=service.yaml",
        "--vl-json=run.json",
        "--vl-report=report.html",
        "--junitxml=junit.xml",
        "--vl-save=last",
        "-rA",
        "-l",
        "-vv",
    ]
    with running("flask_service.py", "--api-key", SECRET, log=tmp_path / "log") as origin:
        monkeypatch.delenv("SERVICE_KEY", raising=False)
        missing = project.runpytest(f"--vl-model={seed_url(origin)}", *args)
        missing.assert_outcomes(failed=4)
        missing.stdout.fnmatch_lines(["*service.yaml: headers need $SERVICE_KEY, which is not set*"])
        monkeypatch.setenv("SERVICE_KEY", SECRET)
        result = project.runpytest(f"--vl-model={seed_url(origin)}", *args)
        result.assert_outcomes(passed=2, failed=1, skipped=1)
        result.stdout.fnmatch_lines(["*HTTP 400: rejected request with headers*'X-Api-Key': '***'*"])
        assert requests_served(origin) == 4  # the key opened the door
    output = result.stdout.str() + result.stderr.str() + missing.stdout.str()
    assert SECRET not in output
    written = [p for p in project.path.rglob("*") if p.is_file()]
    assert any(p.name == "run.json" for p in written) and any(p.suffix == ".html" for p in written)
    assert [p for p in written if SECRET.encode() in p.read_bytes()] == []
    record = json.loads((project.path / "run.json").read_text())
    assert record["models"][0]["backend"]["headers"] == {"X-Api-Key": "from $SERVICE_KEY"}


def test_the_answer_cache_is_off_without_an_identity_and_keyed_on_it_with_one(
    project: pytest.Pytester, tmp_path: Path
) -> None:
    args = ["--vl-endpoint=service.yaml", "-k", "one or dialogue", "--vl-json=run.json"]
    with running("flask_service.py", log=tmp_path / "log") as origin:
        for _ in range(2):
            project.runpytest(f"--vl-model={seed_url(origin)}", *args).assert_outcomes(passed=1, skipped=1)
        assert requests_served(origin) == 2  # asked both times
        info = json.loads((project.path / "run.json").read_text())["models"][0]["backend"]
        assert info["cache"].startswith("off: ") and "names no identity" in info["cache"]

        (project.path / "service.yaml").write_text(SEED + "identity: {url: /version, path: version}\n")
        for _ in range(2):
            project.runpytest(f"--vl-model={seed_url(origin)}", *args).assert_outcomes(passed=1, skipped=1)
        assert requests_served(origin) == 3  # the second run came from the cache
        info = json.loads((project.path / "run.json").read_text())["models"][0]["backend"]
        assert info["cache"] == "keyed on GET /version: version=echo-1"


# --- the FastAPI JSON variant and the Gradio app (echo) -------------------------------------------------------

JSON_DESCRIPTION = """
body: json
image: {field: inputs.images, several: true}
question: inputs.prompt
system: inputs.system
history: inputs.messages
max_tokens: parameters.max_new_tokens
answer: choices.0.text
identity: {url: /health, path: model_version}
"""


def test_a_json_service_holds_dialogues_and_system_prompts(project: pytest.Pytester, tmp_path: Path) -> None:
    (project.path / "service.yaml").write_text(JSON_DESCRIPTION)
    project.makefile(
        ".yaml",
        test_more="""
defaults: {scorer: exact, max_new_tokens: 8}
cases:
  - {id: system, image: images/red.png, question: 'say: ok echo system', system: 'Be brief.', expected: 'ok Be brief.'}
  - {id: two-images, images: [images/red.png, images/blue.png], question: 'say: two count images', expected: 'two images=2'}
  - {id: bad, image: images/red.png, question: '', expected: x}
""",
    )
    with running("fastapi_service.py", log=tmp_path / "log") as origin:
        result = project.runpytest(f"--vl-model={origin}/generate", "--vl-endpoint=service.yaml", "-v")
    result.assert_outcomes(passed=6, failed=1)  # flaky: a 500, retried; bad: a 422, not retried
    result.stdout.fnmatch_lines(["*test_say.yaml::dialogue?generate? PASSED*"])
    result.stdout.fnmatch_lines([f"*POST {origin}/generate: HTTP 422: inputs.prompt is required*"])


GRADIO_DESCRIPTION = """
image: image
question: question
max_tokens: max_new_tokens
"""


def test_a_gradio_app_through_its_client(project: pytest.Pytester, tmp_path: Path) -> None:
    pytest.importorskip("gradio")
    (project.path / "service.yaml").write_text(GRADIO_DESCRIPTION)
    with running("gradio_service.py", log=tmp_path / "log") as origin:
        port = origin.rsplit(":", 1)[1]
        result = project.runpytest(f"--vl-model=gradio://127.0.0.1:{port}/predict", "--vl-endpoint=service.yaml")
        # flaky: the app raises once, the retry answers; leak: answered (the echo app does not leak)
        result.assert_outcomes(passed=3, skipped=1)
        wrong = project.runpytest(f"--vl-model=gradio://127.0.0.1:{port}/caption", "--vl-endpoint=service.yaml")
        wrong.assert_outcomes(failed=4)
        wrong.stdout.fnmatch_lines(["*has no API '/caption' (it has: /predict)*"])
        (project.path / "service.yaml").write_text(GRADIO_DESCRIPTION.replace("question: question", "question: text"))
        unknown = project.runpytest(f"--vl-model=gradio://127.0.0.1:{port}/predict", "--vl-endpoint=service.yaml")
        unknown.stdout.fnmatch_lines(["*service.yaml: the Gradio API /predict has no parameter 'text'*"])


@pytest.mark.parametrize(
    "script, model, description",
    [
        ("flask_service.py", "{origin}/v1/vision/completion", SEED),
        ("gradio_service.py", "gradio://127.0.0.1:{port}/predict", GRADIO_DESCRIPTION),
    ],
    ids=["http", "gradio"],
)
def test_ctrl_c_ends_the_run_while_the_service_is_answering(
    project: pytest.Pytester, tmp_path: Path, script: str, model: str, description: str
) -> None:
    """Answers that would take a minute: Ctrl-C ends pytest in seconds, with the record kept and marked."""
    if script.startswith("gradio"):
        pytest.importorskip("gradio")
    (project.path / "service.yaml").write_text(description)
    log = tmp_path / "service.log"
    with running(script, "--delay", "60", log=log) as origin:
        spec = model.format(origin=origin, port=origin.rsplit(":", 1)[1])
        command = [sys.executable, "-m", "pytest", f"--vl-model={spec}", "--vl-endpoint=service.yaml"]
        process = subprocess.Popen(
            [*command, "-k", "one", "--vl-json=run.json", "-p", "no:cacheprovider"],
            cwd=project.path, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        )  # fmt: skip
        try:
            deadline = time.monotonic() + 60
            while "answering" not in log.read_text() and time.monotonic() < deadline and process.poll() is None:
                time.sleep(0.1)
            assert "answering" in log.read_text(), "the request never reached the service"
            interrupted = time.monotonic()
            process.send_signal(signal.SIGINT)
            output, _ = process.communicate(timeout=30)
            ended = time.monotonic() - interrupted
        finally:
            if process.poll() is None:
                process.kill()
                process.wait()
    assert process.returncode == 2, output[-2000:]
    assert ended < 10, f"pytest took {ended:.1f} s to end after Ctrl-C"
    assert "KeyboardInterrupt" in output and "Traceback" not in output
    run = json.loads((project.path / "run.json").read_text())["run"]
    assert run["complete"] is False and run["incomplete_reason"] == "interrupted"


# --- round trips: the built-in model behind each service equals the in-process model --------------------------

ROUND_TRIP_FILES = ("test_colour.yaml", "test_grounding.yaml", "test_ocr.yaml", "test_dialogue.yaml")


def _bundled_project(pytester: pytest.Pytester) -> pytest.Pytester:
    for name in ROUND_TRIP_FILES:
        shutil.copy(REPO / "test_cases" / name, pytester.path / name)
    shutil.copytree(REPO / "test_cases" / "images", pytester.path / "images")
    return pytester


def _answers(record: Path) -> dict[tuple[str, str], list[str | None]]:
    cases = json.loads(record.read_text())["cases"]
    return {
        (c["suite"], c["case_id"]): [t.get("answer") for t in c["turns"]] for c in cases if c["outcome"] != "skipped"
    }


@pytest.fixture(scope="module")
def in_process_answers(tmp_path_factory: pytest.TempPathFactory) -> dict[tuple[str, str], list[str | None]]:
    folder = tmp_path_factory.mktemp("in-process")
    for name in ROUND_TRIP_FILES:
        shutil.copy(REPO / "test_cases" / name, folder / name)
    shutil.copytree(REPO / "test_cases" / "images", folder / "images")
    command = [sys.executable, "-m", "pytest", *ROUND_TRIP_FILES, "--vl-model=tiny", "--vl-no-cache"]
    done = subprocess.run(
        [*command, "--vl-json=run.json", "-p", "no:cacheprovider", "-q"],
        cwd=folder, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout[-3000:]
    return _answers(folder / "run.json")


@pytest.mark.parametrize(
    "script, model, description",
    [
        ("flask_service.py", "{origin}/v1/vision/completion", SEED),
        ("fastapi_service.py", "{origin}/generate", JSON_DESCRIPTION + "family: Qwen3-VL\n"),
        ("gradio_service.py", "gradio://127.0.0.1:{port}/predict", GRADIO_DESCRIPTION + "family: Qwen3-VL\n"),
    ],
    ids=["flask-multipart", "fastapi-json", "gradio"],
)
def test_the_built_in_model_behind_a_service_answers_as_in_process(
    pytester: pytest.Pytester, tmp_path: Path, in_process_answers: dict, script: str, model: str, description: str
) -> None:
    if script.startswith("gradio"):
        pytest.importorskip("gradio")
    project = _bundled_project(pytester)
    (project.path / "service.yaml").write_text(description)
    with running(script, "--model", "tiny", log=tmp_path / "log") as origin:
        spec = model.format(origin=origin, port=origin.rsplit(":", 1)[1])
        result = project.runpytest_subprocess(
            *ROUND_TRIP_FILES, f"--vl-model={spec}", "--vl-endpoint=service.yaml", "--vl-json=run.json", timeout=600
        )
    served = _answers(project.path / "run.json")
    assert result.ret == 0, result.stdout.str()[-3000:]
    asked = set(served)
    if "history" not in description:
        # A stateless service: its dialogues are skipped (with the reason), everything else is asked.
        result.stdout.fnmatch_lines(["*passed, 6 skipped*"])
        not_asked = set(in_process_answers) - asked
        assert not_asked and all(len(in_process_answers[k]) > 1 for k in not_asked)
    else:
        assert asked == set(in_process_answers)  # dialogues too: the earlier turns go in inputs.messages
    assert len(asked) >= 20
    assert {k: served[k] for k in asked} == {k: in_process_answers[k] for k in asked}
