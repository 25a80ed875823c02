"""roan's own HTTP answer parser against httptools (llhttp, the parser under uvicorn),
each inside roan's pipelined transport, to the same nginx in the same run (issue 31).

    .venv/bin/python bench/transport_parsers.py [--n 10000] [--rounds 9]

Needs ``pip install httptools`` (not a dependency of roan: measured and not kept, see
bench/README.md). The transport is the same code for both (pipelining, the unasked-bytes
checks, the per-answer deadline); only the framing differs: the ``_Connection`` class that
reads answers is swapped round by round, in alternating order. Prints the median purges
per second ("transport only" of dispatch_throughput.py), the client's CPU per purge and
the ratio per round.

The httptools framer here keeps roan's limits (header count and size, body cap, interim
answers, no length = body to the end) and maps llhttp's errors onto roan's messages. What
it cannot do: llhttp refuses a repeated equal ``Content-Length: 2, 2`` and bare-LF chunk
size lines, which roan reads (tests/test_security_transport.py,
``test_answers_with_bare_lf_and_repeated_equal_lengths_are_read``).
"""

from __future__ import annotations

import argparse
import collections
import statistics
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def httptools_connection() -> type:
    """roan's ``_Connection`` with answers framed by httptools."""
    import httptools

    from roan.backends import _pipelined as P

    class _Stop(Exception):
        pass

    class Framer:
        """httptools' callbacks: one answer per finished message, headers as bytes."""

        def __init__(self) -> None:
            self.answers: collections.deque[Any] = collections.deque()
            self.parser = httptools.HttpResponseParser(self)
            # roan accepts a bare LF as a line end (RFC 9112, section 2.2).
            self.parser.set_dangerous_leniencies(lenient_optional_cr_before_lf=True)
            self.headers: list[tuple[bytes, bytes]] = []
            self.in_head = self.partial = self.unsized = self.chunked = False
            self.head_bytes = self.dropped = self.interim = 0
            self.length: bytes | None = None
            self.stop: Any = None
            self.last: tuple[Any, Any] = (None, None)

        def on_message_begin(self) -> None:
            self.headers = []
            self.in_head = self.partial = True
            self.unsized = self.chunked = False
            self.dropped = 0
            self.length = None

        def on_header(self, name: bytes, value: bytes) -> None:
            self.headers.append((name, value))
            if len(self.headers) >= P._MAX_HEADERS:
                self.stop = P._invalid("too many headers")
                raise _Stop
            if len(name) == 14 and name.lower() == b"content-length":
                self.length = value
            elif len(name) == 17 and name.lower() == b"transfer-encoding":
                self.chunked = True

        def answer(self, closes: bool) -> Any:
            # As roan's parser: a run of like answers is one answer reused.
            key = (self.headers, closes)
            if key == self.last[0]:
                return self.last[1]
            found: dict[str, str] = {}
            for name, raw in self.headers:
                low, value = name.decode("latin-1").lower(), raw.decode("latin-1").strip(" \t")
                found[low] = f"{found[low]}, {value}" if low in found else value
            answer = P._Answer(self.parser.get_status_code(), P._Headers(found), closes)
            self.last = (key, answer)
            return answer

        def on_headers_complete(self) -> None:
            self.in_head = False
            status = self.parser.get_status_code()
            if 100 <= status < 200:
                return
            if self.length is not None:
                if int(self.length) > P._MAX_BODY:  # not read: the connection goes
                    self.stop = self.answer(True)
                    raise _Stop
            elif not self.chunked and status not in (204, 304):
                self.unsized = True

        def on_body(self, body: bytes) -> None:
            self.dropped += len(body)
            if self.dropped > P._MAX_BODY:
                self.stop = self.answer(True)
                raise _Stop

        def on_message_complete(self) -> None:
            self.partial = False
            if 100 <= self.parser.get_status_code() < 200:
                self.interim += 1
                if self.interim >= 10:
                    self.stop = P._invalid("too many interim answers")
                    raise _Stop
                return
            self.interim = 0
            self.answers.append(self.answer(not self.parser.should_keep_alive()))

    def why(message: str) -> str:
        if "Transfer-Encoding" in message and "Content-Length" in message:
            return "both Transfer-Encoding and Content-Length"
        if "Content-Length" in message:
            return "a bad Content-Length"
        if "chunk" in message:
            return "a bad chunk size"
        if "status" in message or "response line" in message or "version" in message.lower():
            return "a bad status line"
        return "a malformed header line"

    class Connection(P._Connection):
        __slots__ = ("framer",)

        def __init__(self, sock: Any, read_timeout: float | None = None) -> None:
            super().__init__(sock, read_timeout)
            self.framer = Framer()

        def stale(self) -> bool:
            framer = self.framer
            return bool(framer.answers or framer.partial) or super().stale()

        def unasked(self) -> str:
            framer = self.framer
            return "bytes" if framer.answers or framer.partial else super().unasked()

        def read_answer(self) -> Any:
            framer = self.framer
            self.deadline = time.monotonic() + self.read_timeout
            self.progress = bool(self.buffer) or framer.partial
            while not framer.answers:
                if self.buffer:
                    data, self.buffer = self.buffer, b""
                else:
                    try:
                        data = self._recv()
                    except P._Unanswered as exc:
                        ends = framer.partial and framer.unsized and not framer.in_head
                        if exc.message == P._CLOSED and ends:
                            framer.partial = False
                            self.served += 1
                            return framer.answer(True)
                        raise
                framer.head_bytes = framer.head_bytes + len(data) if framer.in_head else len(data)
                try:
                    framer.parser.feed_data(data)
                except httptools.HttpParserUpgrade:
                    self.served += 1
                    return framer.answer(True)
                except httptools.HttpParserCallbackError:
                    stop, framer.stop = framer.stop, None
                    if isinstance(stop, P._Unanswered):
                        raise stop from None
                    self.served += 1
                    return stop
                except httptools.HttpParserError as exc:
                    raise P._invalid(why(str(exc))) from None
                if framer.in_head and framer.head_bytes > P._MAX_HEAD:
                    raise P._invalid("headers too long")
            self.served += 1
            return framer.answers.popleft()

    return Connection


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=10000, help="purges per run")
    parser.add_argument("--rounds", type=int, default=9)
    args = parser.parse_args()
    import django
    from django.conf import settings

    settings.configure(USE_TZ=True, INSTALLED_APPS=[])
    django.setup()
    from dispatch_throughput import run_transport

    from roan.backends import _pipelined
    from tests.support.caches import Origin, start_nginx

    parsers = {"roan": _pipelined._Connection, "httptools": httptools_connection()}
    per_s: dict[str, list[float]] = {name: [] for name in parsers}
    cpu: dict[str, list[float]] = {name: [] for name in parsers}
    origin = Origin()
    nginx = start_nginx(origin.port)
    try:
        for round_ in range(args.rounds):
            names = list(parsers) if round_ % 2 == 0 else list(reversed(parsers))
            for name in names:
                _pipelined._Connection = parsers[name]  # type: ignore[misc]
                started = time.process_time()
                per_s[name].append(run_transport(args.n, f"{nginx.url}/purge"))
                cpu[name].append((time.process_time() - started) / args.n * 1e6)
    finally:
        _pipelined._Connection = parsers["roan"]  # type: ignore[misc]
        nginx.close()
        origin.close()
    print(f"{args.n} purges to nginx on loopback, {args.rounds} rounds alternated, medians")
    print(f"{'parser':<10} {'purges/s':>9} {'cpu us/purge':>13}")
    for name in parsers:
        print(
            f"{name:<10} {statistics.median(per_s[name]):9.0f} {statistics.median(cpu[name]):13.1f}"
        )
    ratios = [h / r for h, r in zip(per_s["httptools"], per_s["roan"], strict=True)]
    print("httptools / roan, per round:", " ".join(f"{r:.2f}" for r in ratios))
    print(f"median {statistics.median(ratios):.2f}")


if __name__ == "__main__":
    main()
