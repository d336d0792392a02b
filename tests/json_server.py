"""A scripted chat server for tests: a real HTTP server on 127.0.0.1, its answers made by the
test's own function (an independent endpoint, not the built-in simulator)."""

from __future__ import annotations

import contextlib
import http.server
import json
import threading
from collections.abc import Callable, Iterator
from typing import Any

#: Makes the answer to one request: ``(server, body) -> reply``; the reply is a JSON document
#: (sent encoded) or the response body's bytes as they are.
Answer = Callable[[Any, dict[str, Any]], "dict[str, Any] | bytes"]


class _Handler(http.server.BaseHTTPRequestHandler):
    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers["content-length"])))
        server: Any = self.server
        reply = server.answer(server, body)
        data = reply if isinstance(reply, bytes) else json.dumps(reply).encode()
        self.send_response(200)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *_args: Any) -> None:
        pass


@contextlib.contextmanager
def json_server(answer: Answer, **state: Any) -> Iterator[Any]:
    """Serve POSTs with ``answer`` until the block ends; yields the server, whose attributes
    are ``state`` (the answer function's and the test's shared state) plus ``url``, the
    OpenAI-style base URL (``http://127.0.0.1:<port>/v1``)."""
    httpd: Any = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    httpd.answer = answer
    for name, value in state.items():
        setattr(httpd, name, value)
    httpd.url = f"http://127.0.0.1:{httpd.server_address[1]}/v1"
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield httpd
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join()


def completion(
    model: str,
    message: dict[str, Any],
    finish: str | None = "stop",
    *,
    prompt_tokens: int = 3,
    completion_tokens: int = 2,
) -> dict[str, Any]:
    """An OpenAI chat completion holding ``message``, ended by ``finish``."""
    return {
        "id": "x",
        "object": "chat.completion",
        "model": model,
        "choices": [{"index": 0, "message": message, "finish_reason": finish}],
        "usage": {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens},
    }
