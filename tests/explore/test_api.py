"""The explore API on a tiny model: each view's rows are the library call's rows; bad requests get
a 4xx with a message; the token rule; the bounds; the queue and cancellation."""

from __future__ import annotations

import pandas as pd
import pytest

from layerscope.explore import Explorer
from layerscope.explore.views import MAX_NEW_TOKENS, MAX_PROMPT_CHARS
from layerscope.results.io import table_records
from tests.conftest import tiny
from tests.explore.client import call, run, wait

PROMPT = "the capital of france is"


@pytest.fixture(scope="module")
def model(one_thread):
    return tiny("llama")


@pytest.fixture(scope="module")
def app(model):
    with Explorer([model], port=0) as server:
        yield server


def frame(rows) -> pd.DataFrame:
    return pd.DataFrame(rows)


def test_lens_rows_are_the_library_rows(app, model):
    from layerscope.methods.lens import logit_lens

    job = run(app, "lens", {"prompt": PROMPT})
    assert job["state"] == "done", job
    assert job["rows"] == table_records(logit_lens(model, PROMPT, top_k=5))
    assert job["command"].startswith("layerscope lens 'the capital of france is' --top-k 5 --model tiny-llama --json")


def test_decode_rows_are_the_patchscope_rows(app, model):
    from layerscope.methods.patchscopes import DESCRIBE_PROMPT, IDENTITY_PROMPT, patchscope

    job = run(app, "decode", {"prompt": PROMPT, "layer": 2, "position": 3, "max_new_tokens": 4})
    assert job["state"] == "done", job
    rows = frame(job["rows"])
    for name, target in (("token identity", IDENTITY_PROMPT), ("entity description", DESCRIBE_PROMPT)):
        expected = patchscope(model, PROMPT, 3, target, [2], "same", max_new_tokens=4)
        got = rows[rows["inspection"] == name].drop(columns=["inspection", "target"]).reset_index(drop=True)
        assert table_records(got) == table_records(expected)


def test_patching_rows_are_the_sweep_rows(app, model):
    from layerscope.methods.patching import activation_patching

    params = {"clean": PROMPT, "corrupt": "the capital of spain is", "answer": " paris", "wrong": " madrid"}
    job = run(app, "patching", params)
    assert job["state"] == "done", job
    expected = activation_patching(model, PROMPT, "the capital of spain is", " paris", " madrid", progress=False)
    # the app runs a few layers per piece (progress, cancel): the same cells, batched differently
    pd.testing.assert_frame_equal(frame(job["rows"]), frame(table_records(expected)), check_exact=False, atol=1e-5)


def test_attend_rows_are_the_switch_rows(app, model):
    from layerscope.methods.attend import switch

    params = {"prompt": PROMPT, "position": "france", "source": "the city of italy", "source_position": "italy",
              "answers": " paris, rome"}  # fmt: skip
    job = run(app, "attend", params)
    assert job["state"] == "done", job
    expected = switch(model, PROMPT, "france", "the city of italy", "italy", [" paris", " rome"])
    assert job["rows"] == table_records(expected)


def test_metrics_rows_are_the_compare_rows(app, model):
    from layerscope.datasets import load_corpus
    from layerscope.methods.layer_by_layer import compare_models

    job = run(app, "metrics", {"limit": 4, "metrics": "prompt_entropy,curvature"})
    assert job["state"] == "done", job
    expected = compare_models([model], load_corpus()[:4], ["prompt_entropy", "curvature"], progress=False)
    assert job["rows"] == table_records(expected)


def test_rows_download_as_json_and_csv(app, model):
    import json
    import urllib.request

    job = run(app, "lens", {"prompt": "the cat"})
    base = app.url.rstrip("/")
    with urllib.request.urlopen(f"{base}/api/jobs/{job['job']}/rows.json", timeout=30) as response:
        assert json.loads(response.read()) == job["rows"]
        assert "attachment" in response.headers["Content-Disposition"]
    with urllib.request.urlopen(f"{base}/api/jobs/{job['job']}/rows.csv", timeout=30) as response:
        csv = response.read().decode()
    assert csv.splitlines()[0] == ",".join(job["rows"][0])
    assert len(csv.splitlines()) == len(job["rows"]) + 1


@pytest.mark.parametrize(
    ("request_body", "message"),
    [
        ({"view": "nope"}, "unknown view"),
        ({"view": "lens", "params": {"prompt": ""}}, "prompt is empty"),
        ({"view": "lens", "params": {"prompt": "the " * MAX_PROMPT_CHARS}}, "the limit is"),
        ({"view": "lens", "params": {"prompt": "the " * 80}}, "tokens; the limit is"),
        ({"view": "lens", "params": {"prompt": 3}}, "must be text"),
        ({"view": "lens", "params": {"prompt": PROMPT, "lens": "file:///etc/passwd"}}, "lens must be one of"),
        ({"view": "lens", "model": "/etc/passwd", "params": {"prompt": PROMPT}}, "is not loaded"),
        ({"view": "lens", "model": "gemma3-270m", "params": {"prompt": PROMPT}}, "is not loaded"),
        ({"view": "decode", "params": {"prompt": PROMPT, "layer": 9, "position": 0}}, "layer must be between"),
        ({"view": "decode", "params": {"prompt": PROMPT, "layer": 1, "position": 5}}, "position must be between"),
        (
            {"view": "decode", "params": {"prompt": PROMPT, "layer": 1, "position": 0, "max_new_tokens": 41}},
            f"max_new_tokens must be between 0 and {MAX_NEW_TOKENS}",
        ),
        ({"view": "decode", "params": {"prompt": PROMPT, "layer": "1.5", "position": 0}}, "must be an integer"),
        ({"view": "patching", "params": {"clean": PROMPT}}, "corrupt is required"),
        ({"view": "metrics", "params": {"models": "/tmp/model.gguf"}}, "neither loaded nor listed"),
        ({"view": "metrics", "params": {"metrics": "nope"}}, "metric"),
        ({"view": "metrics", "params": {"limit": 100000}}, "limit must be between"),
        ([1, 2], "JSON object"),
    ],
)
def test_bad_requests_get_400_with_a_message(app, request_body, message):
    status, body = call(app, "/api/run", request_body)
    assert status == 400
    assert message in body["error"]
    assert "Traceback" not in body["error"]


def test_transport_errors(app):
    assert call(app, "/api/run", raw=b"{not json")[0] == 400
    status, body = call(app, "/api/run", raw=b"x" * (300 * 1024))
    assert status == 413 and "limit" in body["error"]
    assert call(app, "/static/../../pyproject.toml")[0] == 404
    assert call(app, "/static/%2e%2e%2fserver.py")[0] == 404
    assert call(app, "/api/jobs/j999999")[0] == 404
    assert call(app, "/nowhere")[0] == 404
    assert call(app, "/api/info")[0] == 200  # still serving


def test_a_method_error_is_a_message_on_the_job(app):
    # " paris city" is two tokens: the patching API refuses it; the job says so and the server lives on
    params = {"clean": PROMPT, "corrupt": "the capital of spain is", "answer": " paris city", "wrong": " madrid"}
    job = run(app, "patching", params)
    assert job["state"] == "error" and "token" in job["message"] and "Traceback" not in job["message"]
    assert run(app, "lens", {"prompt": "the cat"})["state"] == "done"


def test_the_token_rule(model):
    # any host but localhost gets a token (127.0.0.2 is still this machine: the test binds nothing outside)
    with Explorer([model], host="127.0.0.2", port=0) as server:
        assert server.token and f"?token={server.token}" in server.url
        assert call(server, "/api/info")[0] == 401
        assert call(server, "/")[0] == 401
        assert call(server, "/api/run", {"view": "lens", "params": {"prompt": PROMPT}})[0] == 401
        assert call(server, "/api/info", token="wrong")[0] == 401
        assert call(server, "/api/info", token=server.token)[0] == 200
        base = server.url.split("?")[0]
        import urllib.request

        with urllib.request.urlopen(f"{base}api/info?token={server.token}", timeout=30) as response:
            assert response.status == 200
        assert run(server, "lens", {"prompt": PROMPT}, token=server.token)["state"] == "done"
    with Explorer([model], port=0) as local:
        assert local.token is None and call(local, "/api/info")[0] == 200


def test_one_run_at_a_time_per_model_and_cancel(model):
    with Explorer([model], port=0, pace=0.3) as server:
        params = {"clean": PROMPT, "corrupt": "the capital of spain is", "answer": " paris", "wrong": " madrid"}
        first = call(server, "/api/run", {"view": "patching", "params": params})[1]
        second = call(server, "/api/run", {"view": "lens", "params": {"prompt": PROMPT}})[1]
        status = call(server, f"/api/jobs/{second['job']}")[1]
        assert status["state"] == "queued" and status["ahead"] == 1
        assert call(server, f"/api/jobs/{first['job']}/cancel", {})[0] == 200
        assert wait(server, first["job"])["state"] == "cancelled"
        assert wait(server, second["job"])["state"] == "done"
        third = call(server, "/api/run", {"view": "lens", "params": {"prompt": PROMPT}})[1]
        call(server, f"/api/jobs/{third['job']}/cancel", {})
        assert wait(server, third["job"])["state"] == "cancelled"
        assert call(server, f"/api/jobs/{third['job']}/rows.json")[0] == 400


def test_the_command_refuses_a_bad_port(capsys):
    from layerscope.cli.main import main

    assert main(["explore", "--port", "70000"]) == 2
    assert "--port must be 0..65535" in capsys.readouterr().err


def test_the_tuned_lens_switch(model, tmp_path, monkeypatch):
    from layerscope.methods.lens import logit_lens
    from layerscope.readout.lenses import TunedLens

    monkeypatch.setenv("LAYERSCOPE_CACHE", str(tmp_path / "cache"))
    with Explorer([model], port=0) as server:
        job = run(server, "lens", {"prompt": PROMPT, "lens": "tuned"})
    assert job["state"] == "done", job
    expected = logit_lens(model, PROMPT, top_k=5, lens=TunedLens.cached(model))
    assert job["rows"] == table_records(expected)
    assert {row["method"] for row in job["rows"]} == {"tuned_lens"}


def test_the_command_line_shown_gives_the_same_rows(tmp_path_factory, capsys, one_thread):
    """The page's command line, run: the lens rows but the prompt index, the patching rows to float rounding."""
    import json
    import shlex

    import layerscope
    from layerscope.cli.main import main
    from tests.conftest import save_model_dir

    folder = str(save_model_dir("llama", tmp_path_factory.mktemp("tiny-llama")))
    loaded = layerscope.load(folder, progress=False)
    patching = {"clean": PROMPT, "corrupt": "the capital of spain is", "answer": " paris", "wrong": " madrid"}
    with Explorer([loaded], port=0) as server:
        lens = run(server, "lens", {"prompt": PROMPT, "lens": "logit"})
        sweep = run(server, "patching", patching)
    for job, drop in ((lens, ["prompt"]), (sweep, [])):
        argv = shlex.split(job["command"].split("  #")[0])[1:]
        capsys.readouterr()
        assert main(argv) == 0
        rows = frame(json.loads(capsys.readouterr().out))
        expected = frame(job["rows"]).drop(columns=drop)
        pd.testing.assert_frame_equal(rows, expected, check_exact=False, atol=1e-5)


def test_cross_site_requests_are_refused(app):
    import urllib.error
    import urllib.request

    base = app.url.rstrip("/")
    body = b'{"view": "lens", "params": {"prompt": "the cat"}}'
    form = urllib.request.Request(base + "/api/run", data=body, headers={"Content-Type": "text/plain"})
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(form, timeout=30)
    assert refused.value.code == 415  # a cross-site form cannot send JSON without a preflight
    rebound = urllib.request.Request(base + "/api/info", headers={"Host": "evil.example:8765"})
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(rebound, timeout=30)
    assert refused.value.code == 403  # DNS rebinding: only loopback names
