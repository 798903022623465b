"""``layerscope explore``'s HTTP server: the standard library's ThreadingHTTPServer, a JSON API over
:mod:`layerscope.explore.views`, and the page's static files (shipped in the package).

Why the standard library: the app serves one user on one machine, a handful of requests a second;
http.server does that with no dependency to install, pin or audit, and the long computations run
in :mod:`layerscope.explore.jobs`' worker threads, not in request handlers, so no async framework
is needed for the page to stay responsive.

API (JSON in and out; errors are ``{"error": message}`` with a 4xx status, never a traceback):

- ``GET /api/info``: the loaded models, the views, the limits;
- ``POST /api/run`` ``{"view", "model"?, "params"}``: queue a computation -> ``{"job", "command", ...}``;
- ``GET /api/jobs/ID``: its state, progress, place in the queue, and its rows once done;
- ``POST /api/jobs/ID/cancel``; ``GET /api/jobs/ID/rows.json`` / ``rows.csv``: the rows as a download.

Any host but 127.0.0.1/localhost requires a token (header ``X-Layerscope-Token`` or ``?token=``).
"""

from __future__ import annotations

import hmac
import json
import secrets
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from importlib import resources
from urllib.parse import parse_qs, urlsplit

from layerscope.errors import LayerscopeError
from layerscope.explore import views
from layerscope.explore.jobs import Jobs
from layerscope.results.io import table_records

MAX_BODY_BYTES = 256 * 1024
LOCAL_HOSTS = ("127.0.0.1", "localhost", "::1")
STATIC = {
    "index.html": "text/html; charset=utf-8",
    "app.js": "text/javascript; charset=utf-8",
    "charts.js": "text/javascript; charset=utf-8",
    "charts.css": "text/css; charset=utf-8",
    "style.css": "text/css; charset=utf-8",
}
#: the chart module is the demo report's too: it lives with the report, in layerscope.results
SHARED = {"charts.js", "charts.css"}


def static_text(name: str) -> str:
    package = "layerscope.results" if name in SHARED else "layerscope.explore"
    return resources.files(package).joinpath("static", name).read_text(encoding="utf-8")


class Lenses:
    """Tuned lenses, fitted (or read from the cache) once per model on first use."""

    def __init__(self):
        self.lock = threading.Lock()
        self.fitted: dict[str, object] = {}

    def tuned(self, model):
        from layerscope.readout.lenses import TunedLens

        with self.lock:
            if model.name not in self.fitted:
                self.fitted[model.name] = TunedLens.cached(model)
            return self.fitted[model.name]


class Explorer:
    """The app on ``models`` (loaded :class:`layerscope.Model` objects, the first one the default).

    ``token``: required on every request when given (default: one is made when ``host`` is not
    local). ``pace``: seconds each computation waits at each step (tests: a run long enough to cancel).
    """

    def __init__(self, models, host: str = "127.0.0.1", port: int = 8765, token: str | None = None, pace=0.0):
        from layerscope.models.registry import BUILTIN_MODELS

        self.models = {m.name: m for m in models}
        if not self.models:
            raise LayerscopeError("explore needs a loaded model")
        self.default = next(iter(self.models))
        self.listed = tuple(BUILTIN_MODELS)
        if token is None and host not in LOCAL_HOSTS:
            token = secrets.token_urlsafe(18)
        self.token = token
        self.jobs = Jobs(pace=pace)
        self.lenses = Lenses()
        self.httpd = ThreadingHTTPServer((host, port), _handler(self))
        self.httpd.daemon_threads = True
        self.thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        host, port = self.httpd.server_address[:2]
        shown = f"[{host}]" if ":" in host else host
        return f"http://{shown}:{port}/" + (f"?token={self.token}" if self.token else "")

    def start(self) -> Explorer:
        self.thread = threading.Thread(target=self.httpd.serve_forever, name="explore-http", daemon=True)
        self.thread.start()
        return self

    def serve_forever(self) -> None:
        self.httpd.serve_forever()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        self.jobs.close()
        if self.thread is not None:
            self.thread.join(timeout=10)

    def __enter__(self) -> Explorer:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.close()

    # ---- the API, as plain functions of parsed requests (the handler only moves bytes) ----

    def info(self) -> dict:
        from layerscope.methods.patchscopes import DESCRIBE_PROMPT, IDENTITY_PROMPT

        return {
            "defaults": {"decode": {"identity_prompt": IDENTITY_PROMPT, "describe_prompt": DESCRIBE_PROMPT}},
            "models": [
                {"name": m.name, "n_layers": m.n_layers, "d_model": m.d_model} for m in self.models.values()
            ],
            "default": self.default,
            "listed": list(self.listed),
            "views": list(views.VIEWS),
            "limits": {
                "prompt_chars": views.MAX_PROMPT_CHARS,
                "prompt_tokens": views.MAX_PROMPT_TOKENS,
                "max_new_tokens": views.MAX_NEW_TOKENS,
                "texts": views.MAX_TEXTS,
            },
        }

    def plan(self, request: dict) -> tuple[str, views.Planned]:
        if not isinstance(request, dict):
            raise views.RequestError("the request must be a JSON object")
        view = request.get("view")
        if view not in views.VIEWS:
            raise views.RequestError(f"unknown view {view!r}: use one of {', '.join(views.VIEWS)}")
        name = request.get("model") or self.default
        if name not in self.models:
            raise views.RequestError(f"model {name!r} is not loaded: use one of {', '.join(self.models)}")
        params = request.get("params") or {}
        if not isinstance(params, dict):
            raise views.RequestError("params must be a JSON object")
        model = self.models[name]
        if view == "lens":
            return name, views.plan_lens(model, params, self.lenses)
        if view == "decode":
            return name, views.plan_decode(model, params)
        if view == "patching":
            return name, views.plan_patching(model, params)
        if view == "attend":
            return name, views.plan_attend(model, params)
        return name, views.plan_metrics(model, params, self.models, self.listed)

    def run(self, request: dict) -> dict:
        name, planned = self.plan(request)
        job = self.jobs.submit(name, request["view"], planned.params, planned.work, planned.command)
        return self.job_status(job.id, rows=False)

    def job_status(self, job_id: str, rows: bool = True) -> dict:
        job = self.jobs.get(job_id)
        if job is None:
            raise NotFound(f"no job {job_id!r} (finished jobs are kept for a while, then forgotten)")
        out = {
            "job": job.id,
            "view": job.view,
            "model": job.model,
            "params": job.params,
            "state": job.state,
            "done": job.done,
            "total": job.total,
            "ahead": self.jobs.position(job),
            "message": job.message,
            "command": job.command,
            "seconds": round(job.finished - job.started, 3) if job.finished and job.started else None,
        }
        if rows and job.state == "done":
            out["rows"] = table_records(job.rows)
        return out

    def cancel(self, job_id: str) -> dict:
        job = self.jobs.get(job_id)
        if job is None:
            raise NotFound(f"no job {job_id!r}")
        job.cancel()
        return self.job_status(job_id, rows=False)

    def rows_file(self, job_id: str, kind: str) -> tuple[bytes, str, str]:
        job = self.jobs.get(job_id)
        if job is None:
            raise NotFound(f"no job {job_id!r}")
        if job.state != "done":
            raise views.RequestError(f"job {job_id} is {job.state}: it has no rows")
        name = f"layerscope-{job.view}-{job.id}.{kind}"
        if kind == "csv":
            return job.rows.to_csv(index=False).encode(), "text/csv; charset=utf-8", name
        return json.dumps(table_records(job.rows)).encode(), "application/json", name


class NotFound(LayerscopeError):
    pass


def _handler(app: Explorer):
    class Handler(BaseHTTPRequestHandler):
        server_version = "layerscope-explore"
        sys_version = ""

        def log_message(self, format, *args) -> None:  # noqa: A002 - quiet: the terminal shows the URL only
            pass

        def _send(self, status: int, body: bytes, kind: str, extra: dict | None = None) -> None:
            self.send_response(status)
            self.send_header("Content-Type", kind)
            self.send_header("Content-Length", str(len(body)))
            self.send_header("Cache-Control", "no-store")
            self.send_header("X-Content-Type-Options", "nosniff")
            # the page loads nothing from elsewhere; say so, so that a pasted prompt cannot make it
            self.send_header(
                "Content-Security-Policy", "default-src 'self'; img-src 'self' data:; style-src 'self' 'unsafe-inline'"
            )
            for key, value in (extra or {}).items():
                self.send_header(key, value)
            self.end_headers()
            self.wfile.write(body)

        def _json(self, status: int, payload) -> None:
            self._send(status, json.dumps(payload).encode(), "application/json")

        def _host_ok(self) -> bool:
            # DNS rebinding: a page elsewhere may resolve its own name to 127.0.0.1; the browser then
            # sends that name as Host. Without a token, only the loopback names are answered.
            if app.token is not None:
                return True
            host = (self.headers.get("Host") or "").rsplit(":", 1)[0].strip("[]")
            return host in LOCAL_HOSTS

        def _allowed(self, query: dict) -> bool:
            if app.token is None:
                return True
            given = self.headers.get("X-Layerscope-Token") or (query.get("token") or [""])[0]
            return hmac.compare_digest(given.encode(), app.token.encode())

        def _dispatch(self, method: str) -> None:
            url = urlsplit(self.path)
            query = parse_qs(url.query)
            path = url.path
            try:
                if not self._host_ok():
                    self._json(403, {"error": "this server answers only to 127.0.0.1 / localhost"})
                    return
                if not self._allowed(query):
                    self._json(401, {"error": "this server needs its token: open the URL printed at its start"})
                    return
                if method == "GET" and path == "/":
                    self._send(200, static_text("index.html").encode(), STATIC["index.html"])
                elif method == "GET" and path.startswith("/static/"):
                    name = path[len("/static/") :]
                    if name not in STATIC:  # a fixed list: no path from a request reaches the file system
                        raise NotFound(f"no file {name!r}")
                    self._send(200, static_text(name).encode(), STATIC[name])
                elif method == "GET" and path == "/api/info":
                    self._json(200, app.info())
                elif method == "POST" and path == "/api/run":
                    self._json(200, app.run(self._body()))
                elif path.startswith("/api/jobs/"):
                    parts = path[len("/api/jobs/") :].split("/")
                    if method == "GET" and len(parts) == 1:
                        self._json(200, app.job_status(parts[0]))
                    elif method == "POST" and len(parts) == 2 and parts[1] == "cancel":
                        self._json(200, app.cancel(parts[0]))
                    elif method == "GET" and len(parts) == 2 and parts[1] in ("rows.json", "rows.csv"):
                        body, kind, name = app.rows_file(parts[0], parts[1].split(".")[1])
                        self._send(200, body, kind, {"Content-Disposition": f'attachment; filename="{name}"'})
                    else:
                        raise NotFound(f"no such endpoint: {method} {path}")
                else:
                    raise NotFound(f"no such endpoint: {method} {path}")
            except NotFound as error:
                self._json(404, {"error": str(error)})
            except Unsupported as error:
                self._json(415, {"error": str(error)})
            except TooLarge as error:
                self._json(413, {"error": str(error)})
            except LayerscopeError as error:  # a refused request or a method's own error: a message
                self._json(400, {"error": str(error)})
            except Exception as error:  # noqa: BLE001 - a message, never a traceback or a dead server
                self._json(500, {"error": f"internal error: {type(error).__name__}: {error}"})

        def _body(self) -> dict:
            try:
                length = int(self.headers.get("Content-Length") or 0)
            except ValueError:
                raise views.RequestError("bad Content-Length") from None
            # JSON only: a form on another site can POST text/plain without a CORS preflight, not JSON
            if (self.headers.get("Content-Type") or "").split(";")[0].strip() != "application/json":
                raise Unsupported("requests must be application/json")
            if length > MAX_BODY_BYTES:
                raise TooLarge(f"the request is {length} bytes; the limit is {MAX_BODY_BYTES}")
            raw = self.rfile.read(length) if length > 0 else b""
            try:
                return json.loads(raw or b"{}")
            except (UnicodeDecodeError, json.JSONDecodeError) as error:
                raise views.RequestError(f"the request is not JSON: {error}") from None

        def do_GET(self) -> None:  # noqa: N802 - http.server's names
            self._dispatch("GET")

        def do_POST(self) -> None:  # noqa: N802
            self._dispatch("POST")

    return Handler


class TooLarge(LayerscopeError):
    pass


class Unsupported(LayerscopeError):
    pass
