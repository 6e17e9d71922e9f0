"""A client for the spine's mailroom bridge (spine-conventions §3.5).

`POST /inbox/enqueue` with `Authorization: Bearer <token>` and JSON {prompt, slug, run_id,
session_id} answers 200 {"status": "enqueued", "path", "run_id"}; `GET /inbox/status/<run_id>`
answers the run's state or 404. The bridge runs agent-enqueue.sh, so what lands on disk is
the script's doing, not ours.

Errors are typed for the caller: BridgeAuthError (401/403: the token is refused),
BridgeTransientError (unreachable, timeout, 5xx, 429: may be retried, with the same run and
session id so a retry overwrites rather than duplicates), BridgeRejected (400: the request is
wrong), BridgeProtocolError (an answer that is not the documented shape). No message ever holds
the token: it only travels in a header, and headers are never shown.
"""

from __future__ import annotations

import json
import urllib.parse

from spine_comms.core.errors import CouldNotEvaluate, UsageError
from spine_comms.mailroom.filesystem import RUN_ID_RE

MAX_BODY = 1024 * 1024  # the bridge refuses a Content-Length over 1 MiB
MAX_ANSWER = 256 * 1024


class BridgeError(CouldNotEvaluate):
    reference = "mailroom-bridge"
    transient = False


class BridgeAuthError(BridgeError):
    """401/403. Exit 3 like every refused credential in spine-comms (README exit-code table)."""

    reference = "mailroom-bridge-auth"
    kind = "credentials_refused"  # core.outcomes.FailureKind, for the envelope's error.kind


class BridgeTransientError(BridgeError):
    reference = "mailroom-bridge-unavailable"
    transient = True
    kind = "unreachable"


class BridgeProtocolError(BridgeError):
    reference = "mailroom-bridge-protocol"
    kind = "protocol_error"


class BridgeRejected(UsageError):
    """400: the bridge judged the request invalid (exit 2)."""

    reference = "mailroom-bridge-rejected"


def _reason(exc: BaseException) -> str:
    seen = exc
    while seen.__cause__ is not None or seen.__context__ is not None:
        seen = seen.__cause__ or seen.__context__
    text = str(getattr(seen, "reason", None) or getattr(seen, "strerror", None) or seen or type(seen).__name__)
    return text.split(" (_ssl.c")[0][:200]


class BridgeClient:
    def __init__(self, url: str, token: str, *, ca_file: str | None = None, timeout: float = 15.0):
        parts = urllib.parse.urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise UsageError(f"bridge URL {url[:200]!r} is not an http(s) URL")
        if parts.username or parts.password:
            raise UsageError("the bridge URL must not carry credentials; give the token by token_ref")
        if not token:
            raise UsageError("no bridge token", hint="set MAILROOM_BRIDGE_TOKEN or the contract's token_ref")
        self.url = urllib.parse.urlunsplit((parts.scheme, parts.netloc, parts.path.rstrip("/"), "", ""))
        self.timeout = timeout
        self.verify: str | bool = ca_file or True
        self._headers = {"Authorization": f"Bearer {token}", "Accept": "application/json", "User-Agent": "spine-comms"}
        import niquests

        self._niquests = niquests
        self._session = niquests.Session(retries=0)

    def _request(self, method: str, path: str, body: bytes | None = None) -> tuple[int, dict | None]:
        headers = dict(self._headers)
        if body is not None:
            headers["Content-Type"] = "application/json"
        shown = f"{method} {self.url}{path}"
        exceptions = self._niquests.exceptions
        try:
            raw = self._session.request(method, self.url + path, data=body, headers=headers, timeout=self.timeout,
                                        verify=self.verify, allow_redirects=False, stream=True)  # fmt: skip
            data = b""
            for chunk in raw.iter_content(64 * 1024):
                data += chunk
                if len(data) > MAX_ANSWER:
                    raw.close()
                    raise BridgeProtocolError(f"{shown}: answer over {MAX_ANSWER} bytes")
        except exceptions.Timeout:
            raise BridgeTransientError(f"{shown}: no answer within {self.timeout:g} s") from None
        except exceptions.SSLError as exc:
            raise BridgeTransientError(f"{shown}: TLS failed: {_reason(exc)}") from None
        except exceptions.RequestException as exc:
            raise BridgeTransientError(f"{shown}: unreachable: {_reason(exc)}") from None
        status = raw.status_code
        try:
            parsed = json.loads(data) if data else None
        except ValueError:
            parsed = None
        parsed = parsed if isinstance(parsed, dict) else None
        if status in (401, 403):
            raise BridgeAuthError(
                f"{shown}: the bridge refused the token (HTTP {status})",
                hint="check MAILROOM_BRIDGE_TOKEN or the inbox contract's mailroom.bridge.token_ref",
            )
        if status == 429 or status >= 500:
            detail = _error_text(parsed)
            raise BridgeTransientError(f"{shown}: HTTP {status}" + (f": {detail}" if detail else ""))
        if 300 <= status < 400:
            raise BridgeProtocolError(f"{shown}: redirected (HTTP {status}); not followed, fix the bridge URL")
        return status, parsed

    def enqueue(self, prompt: str, *, slug: str, run_id: str | None = None, session_id: str | None = None) -> dict:
        """{path, run_id} of the item the bridge wrote (run_id is the file stem)."""
        payload = {"prompt": prompt, "slug": slug}
        if run_id:
            payload["run_id"] = run_id
        if session_id:
            payload["session_id"] = session_id
        body = json.dumps(payload).encode("utf-8")
        if len(body) > MAX_BODY:
            raise UsageError(f"the prompt is too large for the bridge ({len(body)} bytes of JSON; at most {MAX_BODY})")
        status, answer = self._request("POST", "/inbox/enqueue", body)
        if status == 400:
            raise BridgeRejected(f"the bridge rejected the request: {_error_text(answer) or 'HTTP 400'}")
        if status != 200 or not answer:
            raise BridgeProtocolError(f"POST {self.url}/inbox/enqueue: unexpected HTTP {status}")
        path, stem = answer.get("path"), answer.get("run_id")
        if answer.get("status") != "enqueued" or not isinstance(path, str) or not isinstance(stem, str):
            raise BridgeProtocolError(f"POST {self.url}/inbox/enqueue: answer without status/path/run_id")
        return {"path": path, "run_id": stem}

    def status(self, run_id: str) -> dict | None:
        """The bridge's view of a run ({run_id, state, updated_at_epoch, prompt_path?, result_path?}),
        None when it knows nothing of it (404)."""
        if not RUN_ID_RE.match(run_id or ""):
            raise UsageError(f"invalid run id {run_id[:80]!r}")
        # Validated above: every character is one a URL path carries as it is.
        status, answer = self._request("GET", f"/inbox/status/{run_id}")
        if status == 404:
            return None
        if status == 400:
            raise BridgeRejected(f"the bridge rejected the run id: {_error_text(answer) or 'HTTP 400'}")
        if status != 200 or answer is None:
            raise BridgeProtocolError(f"GET {self.url}/inbox/status: unexpected HTTP {status}")
        return answer

    def close(self) -> None:
        self._session.close()


def _error_text(answer: dict | None) -> str:
    if not answer:
        return ""
    return " ".join(str(answer.get("error", "")).split())[:200]
