"""A small HTTP client for the explore server in tests: JSON in, (status, JSON) out, bounded waits."""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request


def call(app, path: str, body=None, token: str | None = None, raw: bytes | None = None) -> tuple[int, dict]:
    base = app.url.split("?")[0].rstrip("/")
    data = raw if raw is not None else (None if body is None else json.dumps(body).encode())
    headers = {"Content-Type": "application/json"}
    if token:
        headers["X-Layerscope-Token"] = token
    request = urllib.request.Request(base + path, data=data, headers=headers, method="POST" if data else "GET")
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, json.loads(response.read() or b"{}")
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read() or b"{}")


def wait(app, job_id: str, seconds: float = 120.0, token: str | None = None) -> dict:
    """Poll a job until it finishes (bounded: fails after ``seconds``)."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        status, job = call(app, f"/api/jobs/{job_id}", token=token)
        assert status == 200, job
        if job["state"] not in ("queued", "running"):
            return job
        time.sleep(0.02)
    raise AssertionError(f"job {job_id} still running after {seconds}s")


def run(app, view: str, params: dict, token: str | None = None) -> dict:
    status, job = call(app, "/api/run", {"view": view, "params": params}, token=token)
    assert status == 200, job
    return wait(app, job["job"], token=token)
