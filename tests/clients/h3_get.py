#!/usr/bin/env python3
"""GETs URLs over HTTP/3 with aioquic (an HTTP/3 client independent of the edge's stack).

    h3_get.py --ca CERT [--connections N] URL...

Opens N QUIC connections (default 1) at once; each requests every URL, all in parallel on its
connection. Prints one JSON object per response on stdout, in the order they complete:
{"connection", "url", "status", "headers": [[name, value], ...], "body": base64,
"alpn", "reset": error code or null, "ms": request to last byte}. Exits 1 when a connection
cannot be set up, with the reason on stderr.
"""

import argparse
import asyncio
import base64
import json
import ssl
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
        if isinstance(event, StreamReset) and event.stream_id in self._pending:
            response, done = self._pending.pop(event.stream_id)
            response["reset"] = event.error_code
            done.set_result(response)
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
                (b"user-agent", b"aioquic-test"),
            ],
            end_stream=True,
        )
        self.transmit()
        response = await done
        response["ms"] = (time.monotonic() - started) * 1000.0
        return response


async def run_connection(index, args, out):
    first = urlsplit(args.urls[0])
    config = QuicConfiguration(is_client=True, alpn_protocols=H3_ALPN)
    config.load_verify_locations(args.ca)
    config.server_name = first.hostname
    async with connect(
        first.hostname,
        first.port or 443,
        configuration=config,
        create_protocol=Client,
        wait_connected=True,
    ) as client:
        alpn = client._quic.tls.alpn_negotiated
        responses = await asyncio.gather(*(client.get(u) for u in args.urls))
        for r in responses:
            r["connection"] = index
            r["alpn"] = alpn
            r["body"] = base64.b64encode(r["body"]).decode()
            out.write(json.dumps(r) + "\n")
        out.flush()


async def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ca", required=True, help="PEM certificate to trust")
    parser.add_argument("--connections", type=int, default=1)
    parser.add_argument("--timeout", type=float, default=30.0)
    parser.add_argument("urls", nargs="+")
    args = parser.parse_args()
    try:
        await asyncio.wait_for(
            asyncio.gather(
                *(run_connection(i, args, sys.stdout) for i in range(args.connections))
            ),
            args.timeout,
        )
    except (ConnectionError, asyncio.TimeoutError, ssl.SSLError, OSError) as e:
        print(f"h3_get: {type(e).__name__}: {e}", file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    asyncio.run(main())
