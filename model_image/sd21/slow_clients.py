"""Read deadlines for slow clients, for both servers of the image (sd21-serve, sd21-gateway)."""
from __future__ import annotations

from typing import Optional

from .contract import ServerEnv


# A slow client's bounds: the request head must arrive within HEAD_TIMEOUT_S of its first
# byte (of the connection, for a new one), the body (at most 1 MiB) within BODY_TIMEOUT_S of
# the head; about 35 KB/s at the least, far below any real client of this API. Both are the
# environment's defaults (sd21.contract: SD21_HEAD_TIMEOUT_S, SD21_BODY_TIMEOUT_S).
HEAD_TIMEOUT_S = ServerEnv.head_timeout_s
BODY_TIMEOUT_S = ServerEnv.body_timeout_s
_TIMED_OUT = (b'{"error": {"type": "timeout", "message": "the request was not received in time"}}')


def slow_client_protocol(head_timeout_s: float = HEAD_TIMEOUT_S, body_timeout_s: float = BODY_TIMEOUT_S):
    """uvicorn's h11 protocol with read deadlines for the request head and body.

    uvicorn 0.54.0 has none (read in .venv/.../uvicorn/config.py and protocols/http/
    h11_impl.py): timeout_keep_alive is armed only after a response (on_response_complete)
    and cancelled by any data_received; connection_made arms nothing. So a client that
    sends its head byte by byte, or a body that never completes, holds the connection and
    its task forever (slowloris). This subclass closes such a connection at the deadline,
    with a 408 in the error envelope when part of a request came and no response started
    (RFC 9110 section 15.5.9: a 408 SHOULD come with the "close" option). The image and the
    tests use h11 (uvicorn's "auto" picks httptools only when installed; it is not)."""
    import h11
    from uvicorn.protocols.http.h11_impl import H11Protocol

    class ReadDeadlines(H11Protocol):
        _timer = None
        _phase: Optional[str] = None

        def connection_made(self, transport) -> None:
            super().connection_made(transport)
            self._follow(fresh=True)

        def data_received(self, data: bytes) -> None:
            super().data_received(data)
            self._follow()

        def on_response_complete(self) -> None:
            super().on_response_complete()
            self._follow()

        def connection_lost(self, exc) -> None:
            self._arm(None)
            super().connection_lost(exc)

        def _follow(self, fresh: bool = False) -> None:
            """Head: a new connection, or bytes of a next request buffered (the idle time
            between requests stays uvicorn's keep-alive); body: from the end of the head."""
            state = self.conn.their_state
            if self.transport.get_protocol() is not self:
                phase = None  # upgraded to a WebSocket: its own protocol's business
            elif state is h11.SEND_BODY:
                phase = "body"
            elif state is h11.IDLE and (fresh or self.conn.trailing_data[0]):
                phase = "head"
            else:
                phase = None
            if phase != self._phase:
                self._arm(phase)

        def _arm(self, phase: Optional[str]) -> None:
            if self._timer is not None:
                self._timer.cancel()
            self._phase, self._timer = phase, None
            if phase is not None:
                seconds = head_timeout_s if phase == "head" else body_timeout_s
                self._timer = self.loop.call_later(seconds, self._too_slow, phase)

        def _too_slow(self, phase: str) -> None:
            self._timer = None
            if self.transport.is_closing():
                return
            started = phase == "body" or bool(self.conn.trailing_data[0])
            cycle = self.cycle if phase == "body" else None
            if cycle is not None:
                cycle.disconnected = True  # the app's receive() says http.disconnect; its sends are dropped
                cycle.message_event.set()
            if started and (cycle is None or not cycle.response_started):
                self.transport.write(b"HTTP/1.1 408 Request Timeout\r\ncontent-type: application/json\r\n"
                                     b"connection: close\r\ncontent-length: %d\r\n\r\n%s"
                                     % (len(_TIMED_OUT), _TIMED_OUT))
            self.transport.close()

    return ReadDeadlines
