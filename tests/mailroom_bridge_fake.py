"""A faithful fake of the spine's mailroom bridge (spine-conventions §3.5), for tests.

Like ops/plugins/mailroom-bridge/bin/mailroom-bridge-serve: a ThreadingHTTPServer; the token in
`Authorization: Bearer <t>` or `X-Spine-Token: <t>`; `POST /inbox/enqueue` takes a JSON body of
1 byte to 1 MiB (Content-Length) and writes the item the way agent-enqueue.sh does (session
`S%Y%m%d-%H%M%S` local time unless given, slug through `tr -cd 'a-zA-Z0-9_-'`, run id
`R%03d` unless given and then used as is, written in place with no rename). Like the bridge, it
strips the prompt, slug, run id and session id (`.strip()`) before the script sees them; `GET
/inbox/status/<run_id>` looks in the lanes, then the outbox result, then the ledger; `GET
/health` needs no token. Errors are the bridge's bodies: 400 {"error": "prompt is
required" | "invalid JSON body" | "invalid content length"}, 401 {"error": "unauthorized"},
500 {"error": "enqueue failed", "stderr": ...}.

`fail_next` makes the next enqueue answer that HTTP status (500, 503...), for retry tests;
`omit_run_id` answers without `run_id`, as older bridges do.
"""

from __future__ import annotations

import csv
import json
import random
import re
import threading
from datetime import datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

MAX_BODY = 1024 * 1024
RUN_ID = re.compile(r"^[A-Za-z0-9._:-]+$")
STATUS_LANES = ("queued", "running", "done", "failed", "parked")


class FakeBridge:
    def __init__(self, inbox: Path, outbox: Path, state: Path, token: str):
        self.inbox, self.outbox, self.state, self.token = Path(inbox), Path(outbox), Path(state), token
        self.requests: list[dict] = []  # method, path, headers (as received), body
        self.fail_next: int | None = None
        self.omit_run_id = False  # answer as older bridges do: {"status", "path"} only
        handler = type("Handler", (_Handler,), {"bridge": self})
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> FakeBridge:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.server.shutdown()
        self.server.server_close()

    # What agent-enqueue.sh does, step by step.
    def enqueue(self, prompt: str, slug: str, run_id: str | None, session_id: str | None) -> Path:
        queued = self.inbox / "queued"
        queued.mkdir(parents=True, exist_ok=True)
        session = session_id or f"S{datetime.now():%Y%m%d-%H%M%S}"
        rid = run_id or f"R{random.randrange(1000):03d}"
        slug_clean = re.sub(r"[^a-zA-Z0-9_-]", "", slug or "task")
        path = queued / f"{session}__{slug_clean}__{rid}.md"
        if "/" in session or "/" in rid:  # `cat > $FILEPATH` into a directory that is not there
            raise OSError(f"agent-enqueue.sh: line 30: {path}: No such file or directory")
        path.write_text(prompt, encoding="utf-8")
        return path

    def status(self, run_id: str) -> dict | None:
        for lane in STATUS_LANES:
            path = self.inbox / lane / f"{run_id}.md"
            if path.is_file():
                answer = {"run_id": run_id, "state": lane, "updated_at_epoch": int(path.stat().st_mtime),
                          "prompt_path": str(path)}  # fmt: skip
                result = self.outbox / f"{run_id}__RESULT.md"
                if result.is_file():
                    answer["result_path"] = str(result)
                return answer
        result = self.outbox / f"{run_id}__RESULT.md"
        if result.is_file():
            return {"run_id": run_id, "state": "done", "updated_at_epoch": int(result.stat().st_mtime),
                    "result_path": str(result)}  # fmt: skip
        ledger = self.state / "ledger.csv"
        if ledger.is_file():
            rows = [r for r in csv.reader(ledger.read_text().splitlines()) if r and r[0] == run_id]
            if rows:
                return {"run_id": run_id, "state": rows[-1][4], "updated_at_epoch": int(ledger.stat().st_mtime)}
        return None


class _Handler(BaseHTTPRequestHandler):
    bridge: FakeBridge

    def log_message(self, *args) -> None:  # quiet
        pass

    def _send(self, status: int, body: dict) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _authorized(self) -> bool:
        auth = self.headers.get("Authorization", "")
        given = auth[7:] if auth.startswith("Bearer ") else self.headers.get("X-Spine-Token", "")
        return bool(given) and given == self.bridge.token

    def do_GET(self) -> None:
        self.bridge.requests.append({"method": "GET", "path": self.path, "headers": dict(self.headers)})
        if self.path == "/health":
            return self._send(200, {"status": "ok"})
        if not self._authorized():
            return self._send(401, {"error": "unauthorized"})
        if self.path.startswith("/inbox/status/"):
            run_id = self.path[len("/inbox/status/") :]
            if not RUN_ID.match(run_id):
                return self._send(400, {"error": "invalid run_id"})
            answer = self.bridge.status(run_id)
            return self._send(200, answer) if answer else self._send(404, {"error": "not found"})
        return self._send(404, {"error": "not found"})

    def do_POST(self) -> None:
        length_text = self.headers.get("Content-Length", "")
        length = int(length_text) if length_text.isdigit() else -1
        body = self.rfile.read(length) if 0 < length <= MAX_BODY else b""
        self.bridge.requests.append({"method": "POST", "path": self.path, "headers": dict(self.headers), "body": body})
        if not self._authorized():
            return self._send(401, {"error": "unauthorized"})
        if self.path != "/inbox/enqueue":
            return self._send(404, {"error": "not found"})
        if not 1 <= length <= MAX_BODY:
            return self._send(400, {"error": "invalid content length"})
        try:
            payload = json.loads(body)
        except ValueError:
            return self._send(400, {"error": "invalid JSON body"})
        prompt = str(payload.get("prompt") or "").strip() if isinstance(payload, dict) else ""
        if not prompt:
            return self._send(400, {"error": "prompt is required"})
        if self.bridge.fail_next:
            status, self.bridge.fail_next = self.bridge.fail_next, None
            return self._send(status, {"error": "enqueue failed", "stderr": "injected failure"})
        try:
            path = self.bridge.enqueue(prompt, str(payload.get("slug") or "task").strip(),
                                       str(payload.get("run_id") or "").strip() or None,
                                       str(payload.get("session_id") or "").strip() or None)  # fmt: skip
        except OSError as exc:
            return self._send(500, {"error": "enqueue failed", "stderr": str(exc)})
        answer = {"status": "enqueued", "path": str(path)}
        return self._send(200, answer if self.bridge.omit_run_id else {**answer, "run_id": path.stem})
