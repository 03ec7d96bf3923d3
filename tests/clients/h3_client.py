#!/usr/bin/env python3
"""An HTTP/3 client for the edge's tests, on aioquic (a stack independent of the edge's).

    h3_client.py --ca CERT [--connections N] [--stdin] [--hold] [--half-open K] URL...

Opens N QUIC connections (default 1) at once. Each requests every URL, all in parallel on
its connection, and prints one JSON line per response as it completes: {"connection", "url",
"status", "headers": [[name, value], ...], "body": hex, "alpn", "reset": error code or null,
"ms": request to last byte}.

--stdin        once the connections are set up, print {"ready": connected, "failed": n} and
               read the URLs from one line of stdin (so a herd can be aimed at an object that
               only exists by then); connections that fail to set up are counted, not fatal.
--hold         keep the connections open after the responses until stdin is closed.
--half-open K  on each connection, first open K request streams with the start of a HEADERS
               frame and never finish them.
Exits 1 when no connection can be set up, with the reason on stderr.
"""

import argparse
import asyncio
import json
import sys
import time
from urllib.parse import urlsplit

from aioquic.asyncio import connect
from aioquic.asyncio.protocol import QuicConnectionProtocol
from aioquic.h3.connection import H3_ALPN, H3Connection
from aioquic.h3.events import DataReceived, HeadersReceived
from aioquic.quic.configuration import QuicConfiguration
from aioquic.quic.events import StreamReset


class Client(QuicConnectionProtocol):
    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._http = H3Connection(self._quic)
        self._pending = {}

    def quic_event_received(self, event):
        if isinstance(event, StreamReset):
            entry = self._pending.pop(event.stream_id, None)
            if entry is not None:
                entry[0]["reset"] = event.error_code
                entry[1].set_result(entry[0])
            return
        for ev in self._http.handle_event(event):
            entry = self._pending.get(getattr(ev, "stream_id", None))
            if entry is None:
                continue
            response, done = entry
            if isinstance(ev, HeadersReceived):
                for name, value in ev.headers:
                    if name == b":status":
                        response["status"] = int(value)
                    else:
                        response["headers"].append([name.decode(), value.decode()])
            elif isinstance(ev, DataReceived):
                response["body"] += ev.data
            if ev.stream_ended:
                del self._pending[ev.stream_id]
                done.set_result(response)

    def half_open(self):
        """A request stream with a HEADERS frame that announces 64 bytes and sends three."""
        stream_id = self._quic.get_next_available_stream_id()
        self._quic.send_stream_data(stream_id, b"\x01\x40\x40abc", end_stream=False)
        self.transmit()

    async def get(self, url):
        parts = urlsplit(url)
        target = parts.path + ("?" + parts.query if parts.query else "")
        stream_id = self._quic.get_next_available_stream_id()
        response = {"url": url, "status": None, "headers": [], "body": b"", "reset": None}
        done = asyncio.get_running_loop().create_future()
        self._pending[stream_id] = (response, done)
        started = time.monotonic()
        self._http.send_headers(
            stream_id,
            [
                (b":method", b"GET"),
                (b":scheme", b"https"),
                (b":authority", parts.netloc.encode()),
                (b":path", target.encode()),
                (b"user-agent", b"corral-test-aioquic"),
            ],
            end_stream=True,
        )
        self.transmit()
        response = await done
        response["ms"] = (time.monotonic() - started) * 1000.0
        return response


def emit(obj):
    sys.stdout.write(json.dumps(obj) + "\n")
    sys.stdout.flush()


async def open_connection(args, host, port, stack):
    config = QuicConfiguration(is_client=True, alpn_protocols=H3_ALPN)
    config.load_verify_locations(args.ca)
    config.server_name = host
    config.idle_timeout = args.timeout
    context = connect(host, port, configuration=config, create_protocol=Client)
    client = await asyncio.wait_for(context.__aenter__(), args.timeout)
    stack.append(context)
    for _ in range(args.half_open):
        client.half_open()
    return client


async def fetch_all(index, client, urls):
    alpn = client._quic.tls.alpn_negotiated
    for r in await asyncio.gather(*(client.get(u) for u in urls)):
        r.update(connection=index, alpn=alpn, body=r["body"].hex())
        emit(r)


async def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ca", required=True, help="PEM certificate to trust")
    parser.add_argument("--connections", type=int, default=1)
    parser.add_argument("--timeout", type=float, default=20.0)
    parser.add_argument("--stdin", action="store_true")
    parser.add_argument("--hold", action="store_true")
    parser.add_argument("--half-open", type=int, default=0)
    parser.add_argument("urls", nargs="*")
    args = parser.parse_args()
    loop = asyncio.get_running_loop()
    first = urlsplit(args.urls[0] if args.urls else "https://127.0.0.1:8443/")
    stack = []
    opened = await asyncio.gather(
        *(open_connection(args, first.hostname, first.port or 443, stack) for _ in range(args.connections)),
        return_exceptions=True,
    )
    clients = [c for c in opened if not isinstance(c, BaseException)]
    failures = [c for c in opened if isinstance(c, BaseException)]
    if not clients:
        print(f"h3_client: no connection: {failures[0]!r}", file=sys.stderr)
        sys.exit(1)
    urls = args.urls
    if args.stdin:
        emit({"ready": len(clients), "failed": len(failures)})
        line = await loop.run_in_executor(None, sys.stdin.readline)
        urls = line.split()
    await asyncio.wait_for(
        asyncio.gather(*(fetch_all(i, c, urls) for i, c in enumerate(clients))), args.timeout
    )
    if args.hold:
        while await loop.run_in_executor(None, sys.stdin.readline):
            pass
    for context in stack:
        await context.__aexit__(None, None, None)


if __name__ == "__main__":
    asyncio.run(main())
