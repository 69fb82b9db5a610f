"""A small HTTP/1.1 keep-alive client for the fast path, on asyncio and httptools.

A gateway's upstream call is its tax on every call, so the client is
measured, not assumed (`bench/http_clients.py`, client CPU per request,
loopback upstream): httpx ~900 us at 1 request in flight and ~2,300 us at
256 (its pool checks every pooled connection on each request); aiohttp
~230 us and ~110-130 us; this client ~45 us at both. It does the one thing
the fast path needs, POST a JSON body and read a JSON answer or an SSE
stream, with:

- one pool per origin (scheme, host, port), connections reused LIFO and
  dropped when idle longer than `keepalive_s`, or as soon as the server
  closes them (the protocol sees the EOF while idle);
- at most `max_connections` requests (so connections) in flight; callers
  past it wait;
- TLS through `ssl` for https origins, with SNI and the system's CAs;
- bodies by Content-Length or chunked (httptools/llhttp parses), gzip and
  deflate decoded, headers bounded in count and size;
- a connection whose answer was not read to its end (an error, a
  cancellation, a stream the caller left) is closed, never reused, so the
  upstream sees the caller leave at once.

No proxy support: the fast path serves deployments that litellm would call
directly, and `ProviderRouter` leaves the rest to litellm.

Failures are `HttpError` (connection refused, reset, closed early, a
malformed answer); timeouts are the caller's (asyncio.timeout).
"""

from __future__ import annotations

import asyncio
import collections
import ssl
import time
import zlib
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass
from urllib.parse import urlsplit

import httptools

MAX_HEADER_BYTES = 64 * 1024
MAX_HEADERS = 128


class HttpError(Exception):
    """The request could not be completed at the HTTP layer."""


@dataclass(frozen=True, slots=True)
class Origin:
    scheme: str
    host: str
    port: int

    @classmethod
    def of(cls, url: str) -> tuple[Origin, str]:
        """The origin of an absolute http(s) URL, and the request target (path and query)."""
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"expected an http(s) URL, got {url!r}")
        port = parts.port or (443 if parts.scheme == "https" else 80)
        target = parts.path or "/"
        if parts.query:
            target += f"?{parts.query}"
        return cls(parts.scheme, parts.hostname, port), target

    @property
    def host_header(self) -> str:
        default = 443 if self.scheme == "https" else 80
        host = f"[{self.host}]" if ":" in self.host else self.host
        return host if self.port == default else f"{host}:{self.port}"


@dataclass(frozen=True, slots=True)
class Request:
    """A prepared POST: everything but the body is built once per deployment."""

    origin: Origin
    head: bytes  # request line and headers, up to Content-Length's value

    @classmethod
    def post(cls, url: str, headers: Mapping[str, str]) -> Request:
        origin, target = Origin.of(url)
        lines = [f"POST {target} HTTP/1.1", f"Host: {origin.host_header}"]
        for name, value in headers.items():
            if any(c in name or c in value for c in "\r\n\0") or ":" in name:
                raise ValueError(f"header {name!r} holds a line break or a colon")
            lines.append(f"{name}: {value}")
        lines.append("Content-Length: ")
        return cls(origin, "\r\n".join(lines).encode("latin-1"))

    def encode(self, body: bytes) -> bytes:
        return b"".join((self.head, str(len(body)).encode(), b"\r\n\r\n", body))


class Response:
    """An answer's status and headers; its body is read once, whole or as it arrives."""

    __slots__ = ("_connection", "headers", "status")

    def __init__(self, connection: _Connection, status: int, headers: dict[str, str]) -> None:
        self._connection = connection
        self.status = status
        # Lower-cased names; a repeated header keeps its last value.
        self.headers = headers

    async def read(self, limit: int | None = None) -> bytes:
        """The whole body (at most `limit` bytes, then the connection is dropped)."""
        parts: list[bytes] = []
        size = 0
        async for data in self.iter_chunks():
            parts.append(data)
            size += len(data)
            if limit is not None and size >= limit:
                self.close()
                break
        body = b"".join(parts)
        return body if limit is None else body[:limit]

    async def iter_chunks(self) -> AsyncIterator[bytes]:
        """The body's bytes as they arrive; the connection is released at the end."""
        while (data := await self.next_chunk()) is not None:
            yield data

    def buffered(self) -> bytes | None:
        """The body's bytes that arrived and were not read yet, without waiting; None if none.

        A stream's first events usually arrive with the answer's head: taking
        them at once spares the read a timer and a suspension.
        """
        return self._connection.take_body()

    async def next_chunk(self) -> bytes | None:
        """The body's next bytes, once some arrived; None at its end (the connection released)."""
        data = await self._connection.next_body()
        if data is None:
            self._connection.finish()
        return data

    def close(self) -> None:
        """Drop the connection unless the answer was read to its end (then: a no-op)."""
        self._connection.abandon()


class _Connection(asyncio.Protocol):
    """One keep-alive connection; serves one request at a time."""

    # The state of the answer being read; `_reset` starts it afresh for each request.
    _parser: httptools.HttpResponseParser
    _head: asyncio.Future[Response] | None
    _headers: dict[str, str]
    _header_bytes: int
    _complete: bool
    _keep_alive: bool
    _error: Exception | None
    _decoder: zlib._Decompress | None

    def __init__(self, pool: _OriginPool) -> None:
        self._pool = pool
        self._transport: asyncio.Transport | None = None
        self.closed = False
        self.idle_since = 0.0
        self._name = b""
        self._body: collections.deque[bytes] = collections.deque()
        self._wake: asyncio.Future[None] | None = None
        self._in_use = False
        self._reset()

    # asyncio.Protocol

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        if not self._in_use:
            # Bytes nobody asked for: the connection's state is unknown.
            self._fail(HttpError("the server sent data outside an answer"))
            return
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            self._fail(HttpError("the server asked to upgrade the connection"))
        except (httptools.HttpParserError, HttpError, zlib.error) as exc:
            self._fail(exc if isinstance(exc, HttpError) else HttpError(f"bad answer: {exc}"))

    def eof_received(self) -> bool | None:
        return None  # close the transport

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self._pool.lost(self)
        if self._complete or not self._in_use:
            return
        head = self._head
        delimited = "content-length" in self._headers or "transfer-encoding" in self._headers
        if head is not None and head.done() and not delimited:
            # A body without a length ends where the connection does (HTTP/1.0 style).
            self._complete = True
            self._notify()
            return
        self._set_error(HttpError("the server closed the connection before the answer ended"))

    # httptools callbacks

    def on_header(self, name: bytes, value: bytes) -> None:
        self._header_bytes += len(name) + len(value)
        if self._header_bytes > MAX_HEADER_BYTES or len(self._headers) >= MAX_HEADERS:
            raise HttpError("the answer's headers are too large")
        if name:
            self._name = name
            self._headers[name.decode("latin-1").lower()] = value.decode("latin-1")
        else:  # a value continued across reads
            key = self._name.decode("latin-1").lower()
            self._headers[key] += value.decode("latin-1")

    def on_headers_complete(self) -> None:
        status = self._parser.get_status_code()
        if 100 <= status < 200:
            # An interim answer (100 Continue): the real one follows.
            self._headers = {}
            return
        encoding = self._headers.get("content-encoding", "").lower()
        if encoding in ("gzip", "x-gzip"):
            self._decoder = zlib.decompressobj(zlib.MAX_WBITS | 16)
        elif encoding == "deflate":
            self._decoder = zlib.decompressobj()
        elif encoding not in ("", "identity"):
            raise HttpError(f"unsupported content-encoding {encoding!r}")
        head = self._head
        if head is not None and not head.done():
            head.set_result(Response(self, status, self._headers))

    def on_body(self, body: bytes) -> None:
        if self._decoder is not None:
            body = self._decoder.decompress(body)
        if body:
            self._body.append(body)
            self._notify()

    def on_message_complete(self) -> None:
        # Read now: llhttp forgets it once the message is over.
        self._keep_alive = self._parser.should_keep_alive()
        self._complete = True
        self._notify()

    # the pool's and the response's side

    async def send(self, data: bytes) -> Response:
        assert self._transport is not None
        loop = asyncio.get_running_loop()
        self._in_use = True
        self._head = loop.create_future()
        self._transport.write(data)
        return await self._head

    async def next_body(self) -> bytes | None:
        """All of the body that has arrived and was not read yet, or None at its end.

        Everything buffered leaves at once: the chunks of a chunked body that
        arrived together (an SSE stream's events, under load) are one read, so
        the stream above can hand them on as one.
        """
        while True:
            if (data := self.take_body()) is not None:
                return data
            if self._error is not None:
                raise self._error
            if self._complete:
                if self._decoder is not None:
                    tail = self._decoder.flush()
                    self._decoder = None
                    if tail:
                        return tail
                return None
            self._wake = asyncio.get_running_loop().create_future()
            try:
                await self._wake
            finally:
                self._wake = None

    def take_body(self) -> bytes | None:
        """All of the body that arrived and was not read yet; None if nothing did."""
        body = self._body
        if not body:
            return None
        if len(body) == 1:
            return body.popleft()
        data = b"".join(body)
        body.clear()
        return data

    def finish(self) -> None:
        """The answer was read to its end: back to the pool, or closed if it cannot be reused."""
        if not self._in_use:
            return
        self._in_use = False
        reusable = self._complete and not self.closed and self._keep_alive
        self._reset()
        self._pool.release(self, reusable)

    def abandon(self) -> None:
        """Give the connection up mid-answer (error, cancellation): close it."""
        if not self._in_use:
            return
        self._in_use = False
        self._reset()
        self.close()
        self._pool.release(self, reusable=False)

    def close(self) -> None:
        self.closed = True
        if self._transport is not None:
            self._transport.close()

    def _reset(self) -> None:
        """A connection's state for its next answer."""
        self._parser = httptools.HttpResponseParser(self)
        self._headers = {}
        self._header_bytes = 0
        self._body.clear()
        self._complete = False
        self._keep_alive = False
        self._error = None
        self._decoder = None
        self._head = None

    def _fail(self, exc: Exception) -> None:
        self._set_error(exc)
        self.close()

    def _set_error(self, exc: Exception) -> None:
        if self._error is None:
            self._error = exc
        head = self._head
        if head is not None and not head.done():
            head.set_exception(exc)
        self._notify()

    def _notify(self) -> None:
        wake = self._wake
        if wake is not None and not wake.done():
            wake.set_result(None)


class _OriginPool:
    """Idle connections to one origin, most recently used last."""

    def __init__(self, client: HttpClient, origin: Origin) -> None:
        self._client = client
        self.origin = origin
        self.idle: collections.deque[_Connection] = collections.deque()

    def take(self, now: float, keepalive_s: float) -> _Connection | None:
        while self.idle and now - self.idle[0].idle_since > keepalive_s:
            self.idle.popleft().close()
        while self.idle:
            connection = self.idle.pop()
            if not connection.closed:
                return connection
        return None

    def release(self, connection: _Connection, reusable: bool) -> None:
        if reusable:
            connection.idle_since = self._client.clock()
            self.idle.append(connection)
        else:
            connection.close()
        self._client.returned()

    def lost(self, connection: _Connection) -> None:
        # Closed by the server while idle: forget it now rather than at the next take.
        if connection in self.idle:
            self.idle.remove(connection)


class HttpClient:
    """Pooled HTTP/1.1 POSTs; one per process, closed at shutdown."""

    def __init__(
        self,
        *,
        max_connections: int = 1024,
        keepalive_s: float = 30.0,
        ssl_context: ssl.SSLContext | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.clock = clock
        self._keepalive_s = keepalive_s
        self._ssl = ssl_context
        self._pools: dict[Origin, _OriginPool] = {}
        # Requests in flight, each on its own connection: at most max_connections.
        self._slots = asyncio.Semaphore(max_connections)

    async def post(self, request: Request, body: bytes) -> Response:
        """Send `body` and return once the answer's status and headers are in.

        The caller must read the body to its end or `close()` the response.
        Cancelling (a timeout) before that closes the connection.
        """
        await self._slots.acquire()
        try:
            connection = await self._connection(request.origin)
        except BaseException:
            self._slots.release()
            raise
        try:
            return await connection.send(request.encode(body))
        except BaseException:
            connection.abandon()
            raise

    async def aclose(self) -> None:
        for pool in self._pools.values():
            while pool.idle:
                pool.idle.pop().close()

    def returned(self) -> None:
        self._slots.release()

    async def _connection(self, origin: Origin) -> _Connection:
        pool = self._pools.get(origin)
        if pool is None:
            pool = self._pools[origin] = _OriginPool(self, origin)
        connection = pool.take(self.clock(), self._keepalive_s)
        if connection is not None:
            return connection
        loop = asyncio.get_running_loop()
        tls: ssl.SSLContext | None = None
        if origin.scheme == "https":
            tls = self._ssl or ssl.create_default_context()
            self._ssl = tls
        try:
            _, protocol = await loop.create_connection(
                lambda: _Connection(pool),
                origin.host,
                origin.port,
                ssl=tls,
                server_hostname=origin.host if tls else None,
            )
        except OSError as exc:
            raise HttpError(f"cannot connect to {origin.host}:{origin.port}: {exc}") from exc
        return protocol
