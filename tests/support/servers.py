"""Small HTTP servers a test scripts byte by byte, for what real caches do not do on
request: drop a connection mid-pipeline, stall, close without answering."""

from __future__ import annotations

import socket
import threading
from collections.abc import Callable


class ScriptedServer:
    """A raw HTTP/1.1 server: ``answer(conn_index, request_index_on_conn, path)`` returns
    the bytes to send back (prefixed with ``!``: then close), ``b"hang"`` to never answer,
    or None to close the connection without answering. A list of bytes and numbers is
    sent part by part, a number being seconds to wait in between (an answer arriving
    late). ``greeting`` is written on every connection as soon as it is accepted."""

    def __init__(
        self,
        answer: Callable[[int, int, str], bytes | list[bytes | float] | None],
        greeting: bytes = b"",
    ) -> None:
        self.answer = answer
        self.greeting = greeting
        self.answered: list[str] = []
        self.connections = 0
        self.listener = socket.socket()
        self.listener.bind(("127.0.0.1", 0))
        self.listener.listen(16)
        self.listener.settimeout(0.1)
        self.port = int(self.listener.getsockname()[1])
        self.url = f"http://127.0.0.1:{self.port}"
        self.stop = threading.Event()
        self.threads: list[threading.Thread] = []
        self.thread = threading.Thread(target=self.accept, daemon=True)
        self.thread.start()

    def accept(self) -> None:
        while not self.stop.is_set():
            try:
                conn, _ = self.listener.accept()
            except OSError:
                continue
            self.connections += 1
            thread = threading.Thread(
                target=self.serve, args=(conn, self.connections - 1), daemon=True
            )
            thread.start()
            self.threads.append(thread)

    def serve(self, conn: socket.socket, index: int) -> None:
        conn.settimeout(5)
        reader = conn.makefile("rb")
        try:
            if self.greeting:
                conn.sendall(self.greeting)
            for number in range(1000):
                line = reader.readline()
                if not line:
                    return
                path = line.split()[1].decode()
                while reader.readline() not in (b"\r\n", b""):
                    pass
                reply = self.answer(index, number, path)
                if reply is None:
                    return
                if isinstance(reply, list):
                    self.answered.append(path)
                    for part in reply:
                        if isinstance(part, bytes):
                            conn.sendall(part)
                        elif self.stop.wait(part):
                            return
                    continue
                if reply == b"hang":
                    self.stop.wait(10)
                    return
                self.answered.append(path)  # before the client can see the answer
                conn.sendall(reply.removeprefix(b"!"))
                if reply.startswith(b"!"):  # close after this answer, without saying so
                    return
        except OSError:
            return
        finally:
            reader.close()
            conn.close()

    def close(self) -> None:
        self.stop.set()
        self.thread.join()
        for thread in self.threads:
            thread.join()
        self.listener.close()
