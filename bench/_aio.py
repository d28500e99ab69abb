"""A small asyncio HTTP/1.1 and WebSocket client for load benchmarks (standard library only).

One ``HttpClient`` is one keep-alive connection, as a phone app keeps one; ``WebSocket`` is one
open game socket. Enough protocol for our own server (Content-Length and chunked bodies, text
frames, ping/close); not a general-purpose client.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import os
import struct


class HttpClient:
    def __init__(self, host: str, port: int, headers: dict[str, str] | None = None) -> None:
        self.host, self.port = host, port
        self.headers = headers or {}
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None

    async def _connect(self) -> None:
        self._reader, self._writer = await asyncio.open_connection(self.host, self.port)

    async def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
            with contextlib.suppress(OSError):
                await self._writer.wait_closed()
            self._writer = None

    async def request(
        self, method: str, path: str, body: dict | None = None, headers: dict[str, str] | None = None
    ) -> tuple[int, dict, dict]:
        """(status, JSON body or {}, lower-cased headers). Reconnects once if the server closed."""
        for attempt in (0, 1):
            if self._writer is None:
                await self._connect()
            try:
                return await self._exchange(method, path, body, headers or {})
            except (ConnectionError, asyncio.IncompleteReadError):
                await self.close()
                if attempt:
                    raise
        raise AssertionError("unreachable")

    async def _exchange(self, method, path, body, headers) -> tuple[int, dict, dict]:
        payload = json.dumps(body).encode() if body is not None else b""
        lines = [f"{method} {path} HTTP/1.1", f"Host: {self.host}:{self.port}", f"Content-Length: {len(payload)}"]
        if body is not None:
            lines.append("Content-Type: application/json")
        lines += [f"{k}: {v}" for k, v in {**self.headers, **headers}.items()]
        self._writer.write(("\r\n".join(lines) + "\r\n\r\n").encode() + payload)
        await self._writer.drain()
        status_line = await self._reader.readline()
        if not status_line:
            raise ConnectionError("connection closed")
        status = int(status_line.split()[1])
        response_headers = {}
        while True:
            line = await self._reader.readline()
            if line in (b"\r\n", b""):
                break
            name, _, value = line.decode("latin-1").partition(":")
            response_headers[name.strip().lower()] = value.strip()
        if response_headers.get("transfer-encoding", "").lower() == "chunked":
            raw = b""
            while True:
                size = int((await self._reader.readline()).split(b";")[0], 16)
                chunk = await self._reader.readexactly(size + 2)
                if size == 0:
                    break
                raw += chunk[:-2]
        else:
            raw = await self._reader.readexactly(int(response_headers.get("content-length", 0)))
        if response_headers.get("connection", "").lower() == "close":
            await self.close()
        is_json = response_headers.get("content-type", "").startswith("application/json")
        return status, (json.loads(raw) if raw and is_json else {}), response_headers


class WebSocket:
    """A client WebSocket: ``await WebSocket.open(...)``, then ``receive()`` JSON messages."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._reader, self._writer = reader, writer

    @classmethod
    async def open(cls, host: str, port: int, path: str, headers: dict[str, str]) -> WebSocket:
        reader, writer = await asyncio.open_connection(host, port)
        key = base64.b64encode(os.urandom(16)).decode()
        lines = [
            f"GET {path} HTTP/1.1",
            f"Host: {host}:{port}",
            "Upgrade: websocket",
            "Connection: Upgrade",
            f"Sec-WebSocket-Key: {key}",
            "Sec-WebSocket-Version: 13",
            *[f"{k}: {v}" for k, v in headers.items()],
        ]
        writer.write(("\r\n".join(lines) + "\r\n\r\n").encode())
        await writer.drain()
        status = await reader.readline()
        while (await reader.readline()) not in (b"\r\n", b""):
            pass
        if b" 101 " not in status:
            writer.close()
            raise ConnectionError(f"WebSocket refused: {status!r}")
        return cls(reader, writer)

    async def send(self, message: dict) -> None:
        data = json.dumps(message).encode()
        mask = os.urandom(4)
        header = bytes([0x81])
        if len(data) < 126:
            header += bytes([0x80 | len(data)])
        elif len(data) < 65536:
            header += bytes([0x80 | 126]) + struct.pack(">H", len(data))
        else:
            header += bytes([0x80 | 127]) + struct.pack(">Q", len(data))
        masked = bytes(b ^ mask[i % 4] for i, b in enumerate(data))
        self._writer.write(header + mask + masked)
        await self._writer.drain()

    async def receive(self) -> dict | None:
        """The next JSON text message, or None when the server closed the socket. Pings are
        answered on the way, as a browser does (daphne drops a client that leaves them
        unanswered for 30 s)."""
        while True:
            head = await self._reader.readexactly(2)
            opcode, length = head[0] & 0x0F, head[1] & 0x7F
            if length == 126:
                length = struct.unpack(">H", await self._reader.readexactly(2))[0]
            elif length == 127:
                length = struct.unpack(">Q", await self._reader.readexactly(8))[0]
            payload = await self._reader.readexactly(length)
            if opcode == 0x8:
                return None
            if opcode == 0x9 and length < 126:  # ping: pong with the same payload, masked
                mask = os.urandom(4)
                masked = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
                self._writer.write(bytes([0x8A, 0x80 | length]) + mask + masked)
                await self._writer.drain()
            elif opcode == 0x1:
                return json.loads(payload)

    async def close(self) -> None:
        try:
            self._writer.write(bytes([0x88, 0x80]) + os.urandom(4))
            await self._writer.drain()
        except ConnectionError:
            pass
        self._writer.close()
