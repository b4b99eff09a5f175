"""A stand-in for an agent's CLI RPC listener (Consul 0.7's msgpack protocol), for the tests of
the host-side readiness wait."""

from __future__ import annotations

import socket
import threading

import msgpack


class FakeRPC:
    """Answers Consul's CLI RPC as an agent would: every request header gets a reply header
    with its Seq (and `error`, when set); members-lan also a body. `mode` "close" closes each
    connection once it has read the request, "silent" accepts and never answers."""

    def __init__(self, error: str = "", mode: str = "answer") -> None:
        self.error = error
        self.mode = mode
        self.commands: list[str] = []
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.63", 0))
        self.sock.listen()
        self.port = self.sock.getsockname()[1]
        self.addr = f"127.0.0.63:{self.port}"
        self._held: list[socket.socket] = []
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            if self.mode == "close":
                with conn:  # read the request first: unread data would make it a reset
                    conn.recv(65536)
                continue
            if self.mode == "silent":
                self._held.append(conn)
                continue
            with conn:
                unpacker = msgpack.Unpacker(raw=False)
                pending_body = False
                while data := conn.recv(65536):
                    unpacker.feed(data)
                    for obj in unpacker:
                        if pending_body:  # the handshake's {"Version": 1}
                            pending_body = False
                            continue
                        self.commands.append(obj["Command"])
                        out = msgpack.packb({"Seq": obj["Seq"], "Error": self.error})
                        if obj["Command"] == "handshake":
                            pending_body = True
                        elif not self.error:
                            out += msgpack.packb({"Members": []})
                        conn.sendall(out)

    def close(self) -> None:
        # shutdown first: a thread blocked in accept() would otherwise still take one more
        # connection after close()
        try:
            self.sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self.sock.close()
        for conn in self._held:
            conn.close()
