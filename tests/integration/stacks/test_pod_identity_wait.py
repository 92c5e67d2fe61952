"""The wait after each Pod Identity association: its inline Lambda code, run for real
against a loopback stand-in for CloudFormation's response URL."""
from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, HTTPServer

import pytest

from stacks.pod_identity import WAITER_SOURCE


@pytest.fixture()
def response_url():
    received = []

    class Handler(BaseHTTPRequestHandler):
        def do_PUT(self):
            received.append(json.loads(self.rfile.read(int(self.headers["Content-Length"]))))
            self.send_response(200)
            self.end_headers()

        def log_message(self, *args):
            pass

    server = HTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}/response", received
    server.shutdown()


def handler():
    namespace = {}
    exec(compile(WAITER_SOURCE, "index.py", "exec"), namespace)
    return namespace["handler"]


def event(url: str, request_type: str, **properties) -> dict:
    return {"RequestType": request_type, "ResponseURL": url, "StackId": "stack", "RequestId": "r1",
            "LogicalResourceId": "Wait", "ResourceProperties": properties}


def test_create_waits_then_reports_success(response_url):
    url, received = response_url
    started = time.monotonic()
    handler()(event(url, "Create", Seconds="1", Association="arn"), None)
    assert time.monotonic() - started >= 1
    assert received[0]["Status"] == "SUCCESS" and received[0]["PhysicalResourceId"] == "Wait"


def test_delete_does_not_wait_and_a_bad_event_reports_failure(response_url):
    url, received = response_url
    started = time.monotonic()
    handler()(event(url, "Delete", Seconds="30"), None)
    assert time.monotonic() - started < 5 and received[-1]["Status"] == "SUCCESS"
    handler()(event(url, "Create"), None)  # no Seconds
    assert received[-1]["Status"] == "FAILED" and "KeyError" in received[-1]["Reason"]
