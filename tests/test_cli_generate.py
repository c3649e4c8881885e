"""``flowgate generate``, ``jobs``, ``upscale`` and ``accounts`` run as subprocesses against a
real server and the sandbox upstream.

Every test has its own user and sandbox account with its own sandbox API key, so the
sandbox's call log (``GET /sandbox/gemini/_sandbox/calls``) proves how many generations
really happened upstream.
"""

from __future__ import annotations

import io
import json
import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
from PIL import Image

from flowgate.batch.prompts import PromptFileError, load_prompt_file
from flowgate.client import Client, FlowgateAPIError, ImageRequest
from flowgate.client.files import sniff_content_type
from tests.gateway import Gateway

SEED_PROMPTS: list[dict[str, Any]] = [
    {"prompt": "By default the imagen-4 model generates 4 image variations at 16:9."},
    {
        "model": "nano-banana-pro",
        "aspectRatio": "1:1",
        "count": 2,
        "seed": 123456,
        "prompt": "Nano Banana Pro (Gemini 3 Pro Image), two square variations.",
    },
    {
        "model": "nano-banana-2",
        "aspectRatio": "auto",
        "reference_1": "./reference_image.jpeg",
        "prompt": "Image-to-image: pass a local reference file as reference_1.",
    },
    {
        "model": "imagen-4",
        "aspectRatio": "9:16",
        "count": 4,
        "prompt": "Imagen 4 portrait.",
    },
]


def new_user(gw: Gateway) -> str:
    """A fresh user's token (``flowgate users create``; its stderr shown if it fails)."""
    created = gw.cli("users", "create", f"user-{uuid.uuid4().hex[:8]}", check=False)
    assert created.returncode == 0, created.stderr
    return created.stdout.strip().splitlines()[-1]


def sandbox_user(gw: Gateway, **account: Any) -> tuple[str, str, str]:
    """A new user with one sandbox account; returns (token, email, sandbox key)."""
    token = new_user(gw)
    tag = uuid.uuid4().hex[:8]
    email, key = f"cli-{tag}@example.com", f"cli-{tag}"
    with Client(gw.base_url, token) as client:
        client.add_account(email, provider="sandbox", api_key=key, **account)
    return token, email, key


def upstream_calls(gw: Gateway, key: str) -> list[dict[str, Any]]:
    """Generation calls the sandbox answered for ``key``."""
    every = httpx.get(f"{gw.base_url}/sandbox/gemini/_sandbox/calls").json()["calls"]
    return [c for c in every if c["key"] == key and c["method"] in ("generateContent", "predict")]


def cli_env(gw: Gateway, token: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("FLOWGATE_")}
    env.update(FLOWGATE_URL=gw.base_url, FLOWGATE_TOKEN=token)
    return env


def flowgate(
    gw: Gateway, token: str, *args: str, cwd: Path | None = None, stdin: str | None = None
) -> subprocess.CompletedProcess[str]:
    """Run ``flowgate ARGS`` as a user of ``gw`` (FLOWGATE_URL / FLOWGATE_TOKEN)."""
    return subprocess.run(
        [sys.executable, "-m", "flowgate", *args],
        env=cli_env(gw, token),
        cwd=cwd,
        input=stdin,
        capture_output=True,
        text=True,
        timeout=300,
    )


def records(out: Path) -> list[dict[str, Any]]:
    lines = (out / "manifest.jsonl").read_text().splitlines()
    return [json.loads(line) for line in lines if line.strip()]


def wait_until(condition: Callable[[], bool], what: str, timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.1)


def write_jpeg(path: Path, size: tuple[int, int] = (300, 200)) -> None:
    buf = io.BytesIO()
    Image.new("RGB", size, (30, 90, 200)).save(buf, "JPEG")
    path.write_bytes(buf.getvalue())


# ---------------------------------------------------------------- the seed's prompts.json


def test_seed_prompts_json_generates_and_rerun_skips(gateway: Gateway, tmp_path: Path) -> None:
    token, _email, key = sandbox_user(gateway)
    write_jpeg(tmp_path / "reference_image.jpeg")
    prompts = [*SEED_PROMPTS, {**SEED_PROMPTS[2], "prompt": "Same reference again", "count": 1}]
    (tmp_path / "prompts.json").write_text(json.dumps(prompts, indent=2))
    out = tmp_path / "out"

    first = flowgate(gateway, token, "generate", "prompts.json", "--out", "out", cwd=tmp_path)
    assert first.returncode == 0, first.stderr
    expected = {
        1: ["1_1.png", "1_2.png", "1_3.png", "1_4.png"],
        2: ["2_1.png", "2_2.png"],
        3: ["3_1.png", "3_2.png", "3_3.png", "3_4.png"],
        4: ["4_1.png", "4_2.png", "4_3.png", "4_4.png"],
        5: ["5_1.png"],
    }
    by_index = {r["index"]: r for r in records(out)}
    assert {i: r["files"] for i, r in by_index.items()} == expected
    for name in (n for files in expected.values() for n in files):
        assert sniff_content_type((out / name).read_bytes()) == "image/png"
    second = by_index[2]
    assert second["status"] == "done" and second["httpStatus"] == 200 and second["error"] is None
    assert second["prompt"] == SEED_PROMPTS[1]["prompt"]
    assert second["parameters"] == {
        "aspectRatio": "1:1",
        "count": 2,
        "model": "nano-banana-pro",
        "seed": 123456,
    }
    assert by_index[3]["parameters"]["reference_1"] == "./reference_image.jpeg"
    assert all(len(r["mediaGenerationIds"]) == len(r["files"]) for r in by_index.values())

    with Client(gateway.base_url, token) as client:
        # The reference file was uploaded once and reused by both prompts that name it.
        refs = {
            client.get_job(by_index[i]["jobId"]).request["reference_1"]["referenceId"]
            for i in (3, 5)
        }
        job = client.get_job(by_index[2]["jobId"])
        assert job.request["seed"] == 123456 and job.request["model"] == "nano-banana-pro"
    assert len(refs) == 1

    made = len(upstream_calls(gateway, key))
    assert made == 1 + 2 + 4 + 1 + 1  # imagen: one :predict per prompt; nano: one call per image
    again = flowgate(gateway, token, "generate", "prompts.json", "--out", "out", cwd=tmp_path)
    assert again.returncode == 0, again.stderr
    assert "5 of 5 prompts already done" in again.stderr
    assert len(upstream_calls(gateway, key)) == made
    assert len(records(out)) == 5

    # A deleted image is fetched again from its job, not generated again.
    original = (out / "2_2.png").read_bytes()
    (out / "2_2.png").unlink()
    restored = flowgate(gateway, token, "generate", "prompts.json", "--out", "out", cwd=tmp_path)
    assert restored.returncode == 0, restored.stderr
    assert "4 of 5 prompts already done" in restored.stderr
    assert (out / "2_2.png").read_bytes() == original
    assert len(upstream_calls(gateway, key)) == made
    assert records(out)[-1]["jobId"] == by_index[2]["jobId"]


def test_jsonl_and_text_files_with_json_output(gateway: Gateway, tmp_path: Path) -> None:
    token, email, _key = sandbox_user(gateway)
    (tmp_path / "p.jsonl").write_text(
        '{"prompt": "first", "count": 1}\n\n{"prompt": "second", "model": "nano-banana-2"}\n'
    )
    result = flowgate(
        gateway, token, "generate", str(tmp_path / "p.jsonl"), "--out", str(tmp_path / "a"),
        "--count", "2", "--json",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    lines = [json.loads(line) for line in result.stdout.splitlines()]
    assert sorted((r["index"], len(r["files"])) for r in lines) == [(1, 1), (2, 2)]
    written = sorted(records(tmp_path / "a"), key=lambda r: r["index"])
    assert sorted(lines, key=lambda r: r["index"]) == written  # stdout = the manifest lines

    (tmp_path / "p.txt").write_text(
        "# a comment\nA lighthouse at dusk\n\n[sandbox:delay=10] A red fox\n"
    )
    text = flowgate(
        gateway, token, "generate", str(tmp_path / "p.txt"), "--out", str(tmp_path / "b"),
        "--count", "1", "--model", "nano-banana-pro", "--email", email,
    )  # fmt: skip
    assert text.returncode == 0, text.stderr
    by_index = {r["index"]: r for r in records(tmp_path / "b")}
    assert {i: (r["line"], r["prompt"]) for i, r in by_index.items()} == {
        1: (2, "A lighthouse at dusk"),
        2: (4, "[sandbox:delay=10] A red fox"),
    }
    assert by_index[1]["parameters"] == {"count": 1, "email": email, "model": "nano-banana-pro"}
    assert (tmp_path / "b" / "2_1.png").is_file()


# ---------------------------------------------------------------- validation before sending


def test_invalid_file_reports_every_problem_and_sends_nothing(
    gateway: Gateway, tmp_path: Path
) -> None:
    token, email, key = sandbox_user(gateway)
    write_jpeg(tmp_path / "ok.jpeg")
    (tmp_path / "anim.gif").write_bytes(b"GIF89a\x01\x00\x01\x00")
    (tmp_path / "notes.png").write_text("not an image at all")
    prompts = [
        {"prompt": "fine", "reference_1": "./ok.jpeg", "model": "nano-banana-2"},
        {"promt": "typo"},
        {"prompt": "x", "reference_1": "./missing.jpeg", "aspect_ratio": "1:1"},
        {"prompt": "x", "reference_1": "./anim.gif"},
        {"prompt": "x", "reference_2": "./notes.png"},
        {"prompt": "x", "count": 7},
        {"prompt": "x", "aspectRatio": "auto"},
        {"prompt": "x", "email": "stranger@example.com"},
        {"prompt": "x", "__note": "comments are fine", "reference_11": "./ok.jpeg"},
    ]
    (tmp_path / "bad.json").write_text(json.dumps(prompts, indent=1))
    result = flowgate(gateway, token, "generate", "bad.json", "--out", "out", cwd=tmp_path)
    assert result.returncode == 2
    err = result.stderr
    expected = [
        ("bad.json:7 (#2)", "unknown key(s) promt"),
        ("bad.json:7 (#2)", "prompt is required"),
        ("bad.json:10 (#3)", "unknown key(s) aspect_ratio"),
        ("bad.json:10 (#3)", "reference_1: file './missing.jpeg' not found"),
        ("bad.json:15 (#4)", "extension '.gif' is not supported"),
        ("bad.json:19 (#5)", "'./notes.png' holds text, not a PNG, JPEG or WebP image"),
        ("bad.json:23 (#6)", "count must be an integer from 1 to 4"),
        ("bad.json:27 (#7)", "aspectRatio 'auto' is not available with imagen-4"),
        ("bad.json:31 (#8)", "email stranger@example.com is not one of your accounts"),
        ("bad.json:35 (#9)", "unknown key(s) reference_11"),
    ]
    for location, words in expected:
        assert any(location in line and words in line for line in err.splitlines()), (
            location,
            words,
            err,
        )
    assert "#1)" not in err
    assert "10 problems in the prompt file; nothing was sent" in err
    assert not (tmp_path / "out").exists()
    assert upstream_calls(gateway, key) == []
    with Client(gateway.base_url, token) as client:
        assert client.job_stats().images["summary"][email]["completed"] == 0

    (tmp_path / "broken.json").write_text('[{"prompt": "a"},\n {"prompt": "b",}]')
    broken = flowgate(gateway, token, "generate", "broken.json", "-o", "out", cwd=tmp_path)
    assert broken.returncode == 2 and "broken.json:2: not valid JSON" in broken.stderr

    # --check validates (file and accounts) and sends nothing, even for a good file.
    (tmp_path / "good.txt").write_text("one\ntwo\n")
    check = flowgate(gateway, token, "generate", "good.txt", "-o", "out", "--check", cwd=tmp_path)
    assert check.returncode == 0 and "2 prompts OK" in check.stderr
    offline = flowgate(gateway, "", "generate", "good.txt", "-o", "out", "--check", cwd=tmp_path)
    assert offline.returncode == 0 and "accounts not checked" in offline.stderr
    assert upstream_calls(gateway, key) == [] and not (tmp_path / "out").exists()


def test_prompt_file_parsing_without_a_server(tmp_path: Path) -> None:
    write_jpeg(tmp_path / "r.jpg")
    media_id = "user:5-email:6a6f-image:abc123"
    (tmp_path / "p.json").write_text(
        json.dumps(
            [
                {
                    "prompt": "@reference_2 in space",
                    "reference_2": "r.jpg",
                    "model": "nano-banana-pro",
                },
                {"prompt": "by id", "reference_1": media_id, "count": 1},
            ]
        )
    )
    first, second = load_prompt_file(tmp_path / "p.json", defaults={"count": 3, "email": None})
    assert first.params == {"model": "nano-banana-pro", "count": 3}
    assert first.reference_files[2].content_type == "image/jpeg"
    assert first.request_body({2: "user:1-email:-image:x"}) == {
        "prompt": "@reference_2 in space",
        "model": "nano-banana-pro",
        "count": 3,
        "reference_2": "user:1-email:-image:x",
    }
    assert second.reference_ids == {1: media_id} and second.params == {"count": 1}
    before = first.fingerprint()
    write_jpeg(tmp_path / "r.jpg", (301, 200))  # a changed reference changes the fingerprint
    (changed, _) = load_prompt_file(tmp_path / "p.json")
    assert changed.fingerprint() != before

    (tmp_path / "marker.txt").write_text("uses @reference_1 without it\n")
    try:
        load_prompt_file(tmp_path / "marker.txt")
    except PromptFileError as exc:
        assert [p.line for p in exc.problems] == [1]
        assert "@reference_1" in exc.problems[0].message
    else:
        raise AssertionError("an inline marker without its reference must be refused")


# ---------------------------------------------------------------- retries


def test_busy_429_is_retried_until_it_succeeds(gateway_factory, tmp_path: Path) -> None:
    """flowgate's own 429 Busy (Retry-After: 1) when the account's only slot is taken.

    The account runs one request at a time and the server queues nobody
    (FLOWGATE_QUEUE_TIMEOUT_SECONDS=0), so of three prompts sent at once, those that
    find the slot taken get 429 and must be retried; each prompt holds the slot for
    1.5 s in the sandbox, so at least two of them meet a taken slot.
    """
    gw = gateway_factory("sqlite", FLOWGATE_QUEUE_TIMEOUT_SECONDS="0")
    gw.start()
    token, _email, key = sandbox_user(gw, max_concurrency=1)
    (tmp_path / "p.txt").write_text(
        "\n".join(f"[sandbox:delay=1500] busy prompt {n}" for n in range(1, 4)) + "\n"
    )
    result = flowgate(
        gw, token, "generate", "p.txt", "-o", "out", "--concurrency", "3", "--count", "1",
        "--model", "nano-banana-2", cwd=tmp_path,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    done = records(tmp_path / "out")
    assert sorted(r["index"] for r in done) == [1, 2, 3]
    assert all(r["status"] == "done" and len(r["files"]) == 1 for r in done)
    assert sum(r["attempts"] for r in done) >= 3 + 2  # at least two 429s were retried
    assert "HTTP 429" in result.stderr and "busy" in result.stderr
    # The 429s were flowgate's: upstream saw exactly one call per prompt, all answered.
    assert [c["status"] for c in upstream_calls(gw, key)] == [200, 200, 200]


def test_400_is_not_retried_and_a_lasting_429_gives_up(gateway: Gateway, tmp_path: Path) -> None:
    token, email, key = sandbox_user(gateway)
    (tmp_path / "p.txt").write_text(
        "[sandbox:unsafe] refused by the safety filter\n"
        "[sandbox:429-minute=1] always over the per-minute quota\n"
        "a normal prompt\n"
    )
    result = flowgate(
        gateway, token, "generate", "p.txt", "-o", "out", "--count", "1", "--model",
        "nano-banana-2", "--email", email, "--max-retries", "1", cwd=tmp_path,
    )  # fmt: skip
    assert result.returncode == 1
    by_index = {r["index"]: r for r in records(tmp_path / "out")}
    unsafe, throttled, fine = by_index[1], by_index[2], by_index[3]
    assert (unsafe["status"], unsafe["httpStatus"], unsafe["attempts"]) == ("failed", 400, 1)
    assert unsafe["error"]["error"]["details"][0]["reason"] == "PUBLIC_ERROR_UNSAFE_GENERATION"
    assert unsafe["jobId"] and unsafe["stage"] == "generate"
    assert (throttled["status"], throttled["httpStatus"], throttled["attempts"]) == (
        "failed",
        429,
        2,
    )
    assert throttled["error"]["error"]["status"] == "RESOURCE_EXHAUSTED"
    assert fine["status"] == "done"
    statuses = sorted(c["status"] for c in upstream_calls(gateway, key))
    assert statuses == [200, 200, 429, 429]  # unsafe (a 200 without image), fine, 2 x 429
    assert "1 done, 2 failed" in result.stderr

    # A re-run sends only what failed; the done prompt stays done.
    again = flowgate(
        gateway, token, "generate", "p.txt", "-o", "out", "--count", "1", "--model",
        "nano-banana-2", "--email", email, "--max-retries", "0", cwd=tmp_path,
    )  # fmt: skip
    assert again.returncode == 1 and "1 of 3 prompts already done" in again.stderr
    assert len(upstream_calls(gateway, key)) == 4 + 2


def test_bad_token_stops_the_batch(gateway: Gateway, tmp_path: Path) -> None:
    (tmp_path / "p.txt").write_text("one\n")
    result = flowgate(gateway, "fg_wrong", "generate", "p.txt", "-o", "out", cwd=tmp_path)
    assert result.returncode == 1 and "HTTP 401: Unauthorized" in result.stderr
    missing = flowgate(gateway, "", "generate", "p.txt", "-o", "out", cwd=tmp_path)
    assert missing.returncode == 2 and "no API token" in missing.stderr


# ---------------------------------------------------------------- interrupt and resume


def _default_sigint() -> None:
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def test_interrupt_then_resume_generates_only_what_is_left(
    gateway: Gateway, tmp_path: Path
) -> None:
    token, _email, key = sandbox_user(gateway)
    total = 6
    (tmp_path / "p.txt").write_text(
        "".join(f"[sandbox:delay=700] resumable prompt {n}\n" for n in range(1, total + 1))
    )
    args = [
        sys.executable, "-m", "flowgate", "generate", "p.txt", "-o", "out", "--count", "1",
        "--model", "nano-banana-2", "--concurrency", "1",
    ]  # fmt: skip
    proc = subprocess.Popen(
        args,
        cwd=tmp_path,
        env=cli_env(gateway, token),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        # Ctrl-C as in a terminal: a test run started in the background (`cmd &`) passes
        # SIGINT on ignored, and Python then never raises KeyboardInterrupt.
        preexec_fn=_default_sigint,
    )
    manifest = tmp_path / "out" / "manifest.jsonl"
    wait_until(lambda: manifest.exists() and len(records(tmp_path / "out")) >= 2, "2 prompts done")
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    assert "interrupted" in err and "re-run the same command to resume" in err

    first = {r["index"]: r for r in records(tmp_path / "out")}
    assert 2 <= len(first) < total and all(r["status"] == "done" for r in first.values())
    saved = {
        name: (tmp_path / "out" / name).read_bytes() for r in first.values() for name in r["files"]
    }

    with Client(gateway.base_url, token) as client:
        # The request cut off by the interrupt still finishes on the server: wait for it.
        wait_until(lambda: not client.job_stats("executing").executing_job_ids(), "server idle")
    calls_before = len(upstream_calls(gateway, key))

    resumed = subprocess.run(args, cwd=tmp_path, env=cli_env(gateway, token), capture_output=True,
                             text=True, timeout=300)  # fmt: skip
    assert resumed.returncode == 0, resumed.stderr
    assert f"{len(first)} of {total} prompts already done" in resumed.stderr
    # Exactly the prompts not done before were generated: none twice.
    assert len(upstream_calls(gateway, key)) - calls_before == total - len(first)
    final = records(tmp_path / "out")
    assert len(final) == total  # one line per prompt: the done ones were not written again
    by_index = {r["index"]: r for r in final}
    assert sorted(by_index) == list(range(1, total + 1))
    for index, record in first.items():
        assert by_index[index]["jobId"] == record["jobId"]
    for name, data in saved.items():
        assert (tmp_path / "out" / name).read_bytes() == data
    assert all((tmp_path / "out" / f"{n}_1.png").is_file() for n in range(1, total + 1))


# ---------------------------------------------------------------- jobs, upscale, accounts


def test_jobs_get_and_watch(gateway: Gateway, tmp_path: Path) -> None:
    token, _email, _key = sandbox_user(gateway)
    with Client(gateway.base_url, token) as client:
        done = client.generate_images(ImageRequest(prompt="a kite", model="nano-banana-2", count=1))
        try:
            client.generate_images(ImageRequest(prompt="[sandbox:500] boom", count=1))
        except FlowgateAPIError as exc:
            failed_id = exc.job_id
        else:
            raise AssertionError("[sandbox:500] must fail")
    assert failed_id

    got = flowgate(gateway, token, "jobs", "get", done.job_id, "--json")
    assert got.returncode == 0, got.stderr
    record = json.loads(got.stdout)
    assert record["jobid"] == done.job_id and record["status"] == "completed"
    image = record["response"]["media"][0]["image"]["generatedImage"]
    assert image["mediaGenerationId"] == done.images[0].media_generation_id
    human = flowgate(gateway, token, "jobs", "get", done.job_id)
    assert "completed" in human.stdout and done.images[0].media_generation_id in human.stdout

    failed = flowgate(gateway, token, "jobs", "watch", failed_id, "--json")
    assert failed.returncode == 1
    assert json.loads(failed.stdout.splitlines()[-1])["status"] == "failed"

    bad = flowgate(gateway, token, "jobs", "get", "nope")
    assert bad.returncode == 1 and "HTTP 400: Invalid job ID format" in bad.stderr

    # A job still running: watch follows it to the end.
    def slow() -> None:
        with Client(gateway.base_url, token) as client:
            client.generate_images(ImageRequest(prompt="[sandbox:delay=2500] slow", count=1))

    thread = threading.Thread(target=slow)
    thread.start()
    with Client(gateway.base_url, token) as client:
        running: list[str] = []

        def found() -> bool:
            running[:] = client.job_stats("executing").executing_job_ids()
            return bool(running)

        wait_until(found, "the slow job to run")
    watched = flowgate(gateway, token, "jobs", "watch", running[0], "--json", "--interval", "0.2")
    thread.join()
    assert watched.returncode == 0, watched.stderr
    lines = [json.loads(line) for line in watched.stdout.splitlines()]
    assert lines[-1]["status"] == "completed" and lines[-1]["jobid"] == running[0]
    assert len({line["status"] for line in lines}) == len(lines)  # one line per status change


def test_upscale_command(gateway: Gateway, tmp_path: Path) -> None:
    token, _email, _key = sandbox_user(gateway)
    with Client(gateway.base_url, token) as client:
        made = client.generate_images(
            ImageRequest(prompt="a tower", model="nano-banana-pro", count=1, aspect_ratio="16:9")
        )
    media_id = made.images[0].media_generation_id
    target = tmp_path / "big" / "tower.jpg"
    result = flowgate(
        gateway, token, "upscale", media_id, "--resolution", "4k", "-o", str(target), "--json"
    )
    assert result.returncode == 0, result.stderr
    info = json.loads(result.stdout)
    assert info["file"] == str(target) and info["resolution"] == "4k"
    assert info["bytes"] == target.stat().st_size and info["upscaler"]
    image = Image.open(target)
    assert image.format == "JPEG" and image.size == (4096, 2304)

    wrong = flowgate(gateway, token, "upscale", media_id, "--resolution", "8k", "-o", "x.jpg")
    assert wrong.returncode == 2 and "2k or 4k" in wrong.stderr
    missing = flowgate(gateway, token, "upscale", "nope", "-o", str(tmp_path / "x.jpg"))
    assert missing.returncode == 1 and "HTTP 400" in missing.stderr


def test_accounts_commands(gateway: Gateway) -> None:
    token = new_user(gateway)
    email = f"acc-{uuid.uuid4().hex[:8]}@example.com"
    added = flowgate(
        gateway, token, "accounts", "add", email, "--provider", "sandbox", "--max-concurrency",
        "2", "--model-map", "imagen-4=imagen-4.0-fast-generate-001", "--json",
    )  # fmt: skip
    assert added.returncode == 0, added.stderr
    account = json.loads(added.stdout)
    assert account["email"] == email and account["maxConcurrency"] == 2
    assert account["modelMap"] == {"imagen-4": "imagen-4.0-fast-generate-001"}
    # The key can come from stdin ("-"), never from the process list.
    updated = flowgate(
        gateway, token, "accounts", "add", email, "--provider", "sandbox", "--api-key", "-",
        stdin="sandbox-key-from-stdin\n",
    )  # fmt: skip
    assert updated.returncode == 0 and f"updated {email}" in updated.stdout

    listed = flowgate(gateway, token, "accounts", "list", "--json")
    assert json.loads(listed.stdout)[email]["health"] == "OK"
    assert email in flowgate(gateway, token, "accounts", "list").stdout
    got = json.loads(flowgate(gateway, token, "accounts", "get", email, "--json").stdout)
    assert got["health"] == "OK" and got["apiKey"] != "sandbox-key-from-stdin"

    removed = flowgate(gateway, token, "accounts", "rm", email, "--json")
    assert json.loads(removed.stdout) == {"message": f"Google Flow account {email} deleted"}
    again = flowgate(gateway, token, "accounts", "rm", email)
    assert again.returncode == 1
    assert f"HTTP 404: Google Flow account {email} not found" in again.stderr
    refused = flowgate(gateway, token, "accounts", "add", "a@b.c", "--provider", "cookies")
    assert refused.returncode == 2 and "invalid account" in refused.stderr
