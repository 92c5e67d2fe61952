"""A stand-in for the in-cluster Prometheus's query API on loopback (no Prometheus binary
can be installed here). It answers /api/v1/query like Prometheus does (status, data,
resultType "vector", [timestamp, "value"] pairs; see prometheus.io querying/api) with the
value of the first rule whose fragments all occur in the query; an empty vector otherwise.
It records every query, so a test can check what was asked."""
from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

from tools.dev.localstack import free_port


class FakePrometheus:
    def __init__(self, rules: list[tuple[tuple[str, ...], float]]):
        self.rules, self.asked = rules, []
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):  # noqa: N802 - http.server's name
                url = urlsplit(self.path)
                if url.path != "/api/v1/query":
                    self.send_error(404)
                    return
                params = parse_qs(url.query)
                query, at = params["query"][0], float(params["time"][0])
                fake.asked.append((query, at))
                result = [{"metric": {}, "value": [at, "NaN" if value != value else repr(value)]}
                          for fragments, value in fake.rules
                          if all(fragment in query for fragment in fragments)][:1]
                body = json.dumps({"status": "success", "data": {"resultType": "vector", "result": result}}).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", free_port()), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
