"""The fast path's HTTP/1.1 client against raw loopback servers that send exact bytes.

Each server is a plain asyncio server whose handler reads one request and
writes what the test says, so framing (Content-Length, chunked, a body
ended by closing), encodings, keep-alive and misbehaviour are each
exercised on the wire, with no HTTP library on the server side.
"""

from __future__ import annotations

import asyncio
import gzip
import shutil
import ssl
import subprocess
import zlib
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path

import pytest

from switchboard.providers.http1 import (
    MAX_HEADER_BYTES,
    HttpClient,
    HttpError,
    Origin,
    Request,
)

Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


async def read_request(reader: asyncio.StreamReader) -> tuple[bytes, bytes]:
    """One request's head and body (by its Content-Length)."""
    head = await reader.readuntil(b"\r\n\r\n")
    length = 0
    for line in head.split(b"\r\n"):
        if line.lower().startswith(b"content-length:"):
            length = int(line.split(b":", 1)[1])
    return head, await reader.readexactly(length)


@asynccontextmanager
async def serving(handler: Handler) -> AsyncIterator[tuple[str, list[int]]]:
    """`handler` per connection on a loopback port; yields the URL and each connection's port."""
    peers: list[int] = []

    async def accept(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        peers.append(writer.get_extra_info("peername")[1])
        try:
            await handler(reader, writer)
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()

    server = await asyncio.start_server(accept, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        yield f"http://127.0.0.1:{port}/v1/chat/completions", peers
    finally:
        server.close()


def answering(*answers: bytes, keep: bool = True) -> Handler:
    """A handler that answers each request on a connection with the next of `answers`."""

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        for answer in answers:
            await read_request(reader)
            writer.write(answer)
            await writer.drain()
        if keep:
            await reader.read()  # hold the connection until the client closes it

    return handle


def ok(body: bytes, *headers: str) -> bytes:
    head = "".join(f"{h}\r\n" for h in headers)
    return f"HTTP/1.1 200 OK\r\n{head}Content-Length: {len(body)}\r\n\r\n".encode() + body


@pytest.fixture
async def client() -> AsyncIterator[HttpClient]:
    http = HttpClient(max_connections=8, keepalive_s=30.0)
    yield http
    await http.aclose()


async def post(client: HttpClient, url: str, body: bytes = b"{}") -> tuple[int, bytes]:
    response = await client.post(Request.post(url, {"Content-Type": "application/json"}), body)
    return response.status, await response.read()


def test_a_request_is_one_post_with_host_and_length() -> None:
    request = Request.post("http://example.test:8080/v1/x?y=1", {"Authorization": "Bearer k"})
    wire = request.encode(b"abc")
    assert wire.startswith(b"POST /v1/x?y=1 HTTP/1.1\r\nHost: example.test:8080\r\n")
    assert wire.endswith(b"Authorization: Bearer k\r\nContent-Length: 3\r\n\r\nabc")
    assert Origin.of("https://api.example.test/v1")[0].host_header == "api.example.test"


@pytest.mark.parametrize("bad", [{"X": "a\r\nInjected: 1"}, {"X:Y": "1"}, {"X": "a\nb"}])
def test_headers_that_would_split_the_request_are_refused(bad: dict[str, str]) -> None:
    with pytest.raises(ValueError, match="line break or a colon"):
        Request.post("http://h/x", bad)


def test_only_http_urls() -> None:
    with pytest.raises(ValueError, match="http"):
        Request.post("ftp://h/x", {})


async def test_sent_bytes_are_what_the_server_reads(client: HttpClient) -> None:
    seen: list[tuple[bytes, bytes]] = []

    async def record(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        seen.append(await read_request(reader))
        writer.write(ok(b"{}"))
        await reader.read()

    async with serving(record) as (url, _):
        assert await post(client, url, b'{"a":1}') == (200, b"{}")
    head, body = seen[0]
    assert head.startswith(b"POST /v1/chat/completions HTTP/1.1\r\n")
    assert body == b'{"a":1}'


async def test_keep_alive_reuses_one_connection(client: HttpClient) -> None:
    async with serving(answering(*[ok(b'{"n":1}')] * 5)) as (url, peers):
        for _ in range(5):
            assert await post(client, url) == (200, b'{"n":1}')
    assert len(peers) == 1


@pytest.mark.parametrize(
    ("answer", "body"),
    [
        (
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
            b"3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n",
            b"abcde",
        ),
        (ok(gzip.compress(b"zipped"), "Content-Encoding: gzip"), b"zipped"),
        (ok(zlib.compress(b"deflated"), "Content-Encoding: deflate"), b"deflated"),
        (b"HTTP/1.1 100 Continue\r\n\r\n" + ok(b"after"), b"after"),
    ],
    ids=["chunked", "gzip", "deflate", "interim-100"],
)
async def test_bodies_in_every_framing(client: HttpClient, answer: bytes, body: bytes) -> None:
    async with serving(answering(answer)) as (url, _):
        assert await post(client, url) == (200, body)


async def test_a_body_ended_by_closing_is_whole_and_the_connection_is_not_reused(
    client: HttpClient,
) -> None:
    async def close_after(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\nuntil the end")
        await writer.drain()

    async with serving(close_after) as (url, peers):
        assert await post(client, url) == (200, b"until the end")
        assert await post(client, url) == (200, b"until the end")
    assert len(set(peers)) == 2


async def test_connection_close_is_honoured(client: HttpClient) -> None:
    async with serving(answering(ok(b"a", "Connection: close"), keep=False)) as (url, peers):
        await post(client, url)
        await post(client, url)
    assert len(set(peers)) == 2


async def test_a_server_that_closes_an_idle_connection_is_not_sent_to_again(
    client: HttpClient,
) -> None:
    closed = asyncio.Event()

    async def once(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(ok(b"x"))
        await writer.drain()
        writer.close()
        closed.set()

    async with serving(once) as (url, peers):
        await post(client, url)
        await closed.wait()
        await asyncio.sleep(0)  # the client's protocol sees the EOF on its next turn
        for _ in range(3):
            if len(client._pools[Origin.of(url)[0]].idle) == 0:
                break
            await asyncio.sleep(0.01)
        assert await post(client, url) == (200, b"x")
    assert len(set(peers)) == 2


async def test_idle_connections_expire() -> None:
    now = [0.0]
    client = HttpClient(keepalive_s=5.0, clock=lambda: now[0])
    try:
        async with serving(answering(ok(b"1"), ok(b"2"))) as (url, peers):
            await post(client, url)
            now[0] = 6.0
            await post(client, url)
        assert len(set(peers)) == 2
    finally:
        await client.aclose()


async def test_a_closed_connection_before_the_answer_is_an_error(client: HttpClient) -> None:
    async def hang_up(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nshort")
        await writer.drain()

    async with serving(hang_up) as (url, _):
        with pytest.raises(HttpError, match="closed"):
            await post(client, url)
        async with serving(answering(b"", keep=False)) as (url2, _):
            with pytest.raises(HttpError, match="closed"):
                await post(client, url2)


@pytest.mark.parametrize(
    "answer",
    [
        b"NOT HTTP AT ALL\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nX: " + b"y" * (MAX_HEADER_BYTES + 10) + b"\r\n\r\n",
        ok(b"x", "Content-Encoding: br"),
        ok(b"not gzip", "Content-Encoding: gzip"),
    ],
    ids=["garbage", "huge-header", "unknown-encoding", "corrupt-gzip"],
)
async def test_a_malformed_answer_is_an_error(client: HttpClient, answer: bytes) -> None:
    async with serving(answering(answer)) as (url, _):
        with pytest.raises(HttpError):
            await post(client, url)


async def test_a_refused_connection_is_an_error(client: HttpClient) -> None:
    async with serving(answering()) as (url, _):
        pass  # closed again: nothing listens there now
    with pytest.raises(HttpError, match="cannot connect"):
        await post(client, url)


async def test_streamed_bodies_arrive_as_they_are_sent_and_an_early_close_drops_the_connection(
    client: HttpClient,
) -> None:
    more = asyncio.Event()
    gone = asyncio.Event()

    async def trickle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nfirst\r\n")
        await writer.drain()
        await more.wait()
        await reader.read()  # returns when the client closes
        gone.set()

    async with serving(trickle) as (url, _):
        response = await client.post(Request.post(url, {}), b"{}")
        chunks = aiter(response.iter_chunks())
        assert await anext(chunks) == b"first"
        response.close()
        more.set()
        async with asyncio.timeout(2):
            await gone.wait()


async def test_chunks_that_arrived_together_are_read_as_one(client: HttpClient) -> None:
    """What is buffered leaves in one read, so a stream above can pass it on as one."""
    more = asyncio.Event()

    async def bursts(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nfirst\r\n")
        await writer.drain()
        await more.wait()
        # Three chunks in one write: they arrive together.
        writer.write(b"1\r\na\r\n1\r\nb\r\n1\r\nc\r\n0\r\n\r\n")
        await writer.drain()

    async with serving(bursts) as (url, _):
        response = await client.post(Request.post(url, {}), b"{}")
        chunks = aiter(response.iter_chunks())
        assert await anext(chunks) == b"first"
        more.set()
        assert [chunk async for chunk in chunks] == [b"abc"]


async def test_at_most_max_connections_are_in_flight() -> None:
    client = HttpClient(max_connections=2)
    in_flight = 0
    most = 0
    release = asyncio.Event()

    async def slow(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal in_flight, most
        while True:
            await read_request(reader)
            in_flight += 1
            most = max(most, in_flight)
            await release.wait()
            in_flight -= 1
            writer.write(ok(b"x"))
            await writer.drain()

    try:
        async with serving(slow) as (url, _):
            calls = [asyncio.ensure_future(post(client, url)) for _ in range(5)]
            await asyncio.sleep(0.05)
            release.set()
            assert [await c for c in calls] == [(200, b"x")] * 5
        assert most == 2
    finally:
        await client.aclose()


async def test_a_cancelled_call_frees_its_slot_and_drops_its_connection() -> None:
    client = HttpClient(max_connections=1)

    async def never(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        await reader.read()

    try:
        async with serving(never) as (url, _):
            with pytest.raises(TimeoutError):
                async with asyncio.timeout(0.05):
                    await post(client, url)
            async with serving(answering(ok(b"y"))) as (other, _):
                async with asyncio.timeout(2):
                    assert await post(client, other) == (200, b"y")
    finally:
        await client.aclose()


@pytest.fixture(scope="module")
def tls_files(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A self-signed certificate for `localhost` (the openssl tool), and its key."""
    directory = tmp_path_factory.mktemp("tls")
    subprocess.run(
        [
            "openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
            "-keyout", "key.pem", "-out", "cert.pem", "-subj", "/CN=localhost",
            "-addext", "subjectAltName=DNS:localhost",
        ],
        cwd=directory, check=True, capture_output=True,
    )  # fmt: skip
    return directory / "cert.pem", directory / "key.pem"


@pytest.mark.skipif(shutil.which("openssl") is None, reason="needs the openssl tool")
async def test_https_checks_the_certificate_and_the_name(tls_files: tuple[Path, Path]) -> None:
    cert, key = tls_files
    server_side = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_side.load_cert_chain(cert, key)

    async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            await read_request(reader)
            writer.write(ok(b"secret"))
            await writer.drain()
            await reader.read()
        except (asyncio.IncompleteReadError, ConnectionError, ssl.SSLError):
            pass
        finally:
            writer.close()

    server = await asyncio.start_server(answer, "127.0.0.1", 0, ssl=server_side)
    port = server.sockets[0].getsockname()[1]
    trusting = ssl.create_default_context(cafile=str(cert))
    try:
        client = HttpClient(ssl_context=trusting)
        try:
            assert await post(client, f"https://localhost:{port}/v1") == (200, b"secret")
        finally:
            await client.aclose()
        # The system's CAs do not know this certificate: the connection is refused.
        stranger = HttpClient()
        try:
            with pytest.raises(HttpError, match="cannot connect"):
                await post(stranger, f"https://localhost:{port}/v1")
        finally:
            await stranger.aclose()
        # Trusted, but not for this name.
        misnamed = HttpClient(ssl_context=trusting)
        try:
            with pytest.raises(HttpError, match="cannot connect"):
                await post(misnamed, f"https://127.0.0.1:{port}/v1")
        finally:
            await misnamed.aclose()
    finally:
        server.close()
