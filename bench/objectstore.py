"""A file-backed S3 for the scale benchmark: the calls the product makes, at disk speed.

moto (the demo's and the tests' S3) reads a whole object into memory for every GET, ranged or
not, and builds multipart uploads in memory: a 500 MB index fetched in 8 MB ranges costs it 60
full reads, and a 10M-image build's 20 GB of embeddings would not fit at all. This server keeps
each object as files and answers a range with sendfile, so the benchmark measures the product's
fetch path rather than the emulator. It speaks path-style S3 over HTTP/1.1: create bucket,
put (with If-None-Match / If-Match), get (with Range), head, list v2, delete objects, multipart.

A multipart object stays as its part files, served in order, so completing an upload is instant
whatever its size (assembling 20 GB took longer than the client's read timeout). Completing is
idempotent, as on S3: a client that retries a complete gets the same answer, not NoSuchUpload.

Run: ``python -m bench.objectstore DIR`` prints its URL and serves until stdin closes.
"""

from __future__ import annotations

import hashlib
import os
import sys
import threading
import uuid
from dataclasses import dataclass
from email.utils import formatdate
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import BinaryIO
from urllib.parse import parse_qs, quote, unquote, urlsplit
from xml.etree import ElementTree

XMLNS = "http://s3.amazonaws.com/doc/2006-03-01/"
COPY_BYTES = 4 * 2**20


@dataclass
class Stored:
    parts: list[Path]  # the object is these files, in order
    sizes: list[int]
    etag: str
    modified: float

    @property
    def size(self) -> int:
        return sum(self.sizes)

    def remove(self) -> None:
        for part in self.parts:
            part.unlink(missing_ok=True)


class Store:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.objects: dict[tuple[str, str], Stored] = {}
        self.buckets: set[str] = set()
        self.uploads: dict[str, list[Path]] = {}
        self.completed: dict[str, str] = {}  # upload id -> ETag, for a retried complete
        self.lock = threading.Lock()

    def scratch(self) -> Path:
        return self.root / uuid.uuid4().hex


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    # TCP_NODELAY on every accepted socket. A reply goes out as two writes (headers, then body);
    # with Nagle's algorithm the body waits for the ACK of the headers, which the client delays
    # ~40 ms: a small GET cost ~46 ms here instead of ~1 ms. S3 does not stall so.
    disable_nagle_algorithm = True
    server: Server

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002
        pass

    # ---- routing ----------------------------------------------------------------------------

    def _target(self) -> tuple[str, str, dict[str, list[str]]]:
        parts = urlsplit(self.path)
        bucket, _, key = unquote(parts.path).lstrip("/").partition("/")
        return bucket, key, parse_qs(parts.query, keep_blank_values=True)

    def do_PUT(self) -> None:
        bucket, key, query = self._target()
        if not key:
            self._read_body(None)
            self.server.store.buckets.add(bucket)
            return self._reply(200)
        if "uploadId" in query:
            part = self.server.store.scratch()
            self._read_body(part)
            with self.server.store.lock:
                parts = self.server.store.uploads.get(query["uploadId"][0])
                if parts is not None:
                    number = int(query["partNumber"][0])
                    parts.extend([part] * (number - len(parts)))
                    replaced, parts[number - 1] = parts[number - 1], part
            if parts is None:
                part.unlink()
                return self._error(404, "NoSuchUpload")
            if replaced not in parts:  # a retried part: its first copy is not part of the object
                replaced.unlink()
            return self._reply(200, headers={"ETag": f'"{uuid.uuid4().hex}"'})
        scratch = self.server.store.scratch()
        etag = self._read_body(scratch)
        self._commit(bucket, key, [scratch], str(etag))

    def do_POST(self) -> None:
        bucket, key, query = self._target()
        store = self.server.store
        if "delete" in query:
            body = self._read_body(None, keep=True)
            tree = ElementTree.fromstring(body)
            with store.lock:
                for node in tree.iter():
                    if node.tag.endswith("Key") and node.text:
                        gone = store.objects.pop((bucket, node.text), None)
                        if gone:
                            gone.remove()
            return self._xml(200, f'<DeleteResult xmlns="{XMLNS}"></DeleteResult>')
        if "uploads" in query:
            self._read_body(None)
            upload = uuid.uuid4().hex
            store.uploads[upload] = []
            return self._xml(
                200,
                f'<InitiateMultipartUploadResult xmlns="{XMLNS}"><Bucket>{bucket}</Bucket>'
                f"<Key>{_escape(key)}</Key><UploadId>{upload}</UploadId>"
                "</InitiateMultipartUploadResult>",
            )
        if "uploadId" in query:
            self._read_body(None)
            upload = query["uploadId"][0]
            with store.lock:
                etag = store.completed.get(upload)
                parts = store.uploads.pop(upload, None)
            if etag is None:
                if parts is None:
                    return self._error(404, "NoSuchUpload")
                etag = f"{uuid.uuid4().hex}-{len(parts)}"
                if not self._commit(bucket, key, parts, etag, reply=False):
                    return None
                with store.lock:
                    store.completed[upload] = etag
            return self._xml(
                200,
                f'<CompleteMultipartUploadResult xmlns="{XMLNS}"><Bucket>{bucket}</Bucket>'
                f'<Key>{_escape(key)}</Key><ETag>"{etag}"</ETag>'
                "</CompleteMultipartUploadResult>",
            )
        return self._error(400, "InvalidRequest")

    def do_HEAD(self) -> None:
        self._get(head=True)

    def do_GET(self) -> None:
        bucket, key, query = self._target()
        if not key and "list-type" in query:
            return self._list(bucket, query)
        return self._get(head=False)

    def do_DELETE(self) -> None:
        bucket, key, query = self._target()
        self._read_body(None)
        if "uploadId" in query:
            with self.server.store.lock:
                parts = self.server.store.uploads.pop(query["uploadId"][0], [])
            for part in parts:
                part.unlink(missing_ok=True)
        else:
            with self.server.store.lock:
                gone = self.server.store.objects.pop((bucket, key), None)
            if gone:
                gone.remove()
        self._reply(204)

    # ---- operations -------------------------------------------------------------------------

    def _commit(
        self, bucket: str, key: str, parts: list[Path], etag: str, *, reply: bool = True
    ) -> bool:
        store = self.server.store
        with store.lock:
            existing = store.objects.get((bucket, key))
            refused = None
            if self.headers.get("If-None-Match") == "*" and existing is not None:
                refused = (412, "PreconditionFailed")
            wanted = self.headers.get("If-Match")
            if wanted is not None and (existing is None or wanted.strip('"') != existing.etag):
                refused = (404, "NoSuchKey") if existing is None else (412, "PreconditionFailed")
            if refused is None:
                sizes = [part.stat().st_size for part in parts]
                store.objects[(bucket, key)] = Stored(parts, sizes, etag, _now())
        if refused is not None:
            for part in parts:
                part.unlink()
            self._error(*refused)
            return False
        if existing is not None:
            existing.remove()
        if reply:
            self._reply(200, headers={"ETag": f'"{etag}"'})
        return True

    def _get(self, *, head: bool) -> None:
        bucket, key, _ = self._target()
        with self.server.store.lock:
            found = self.server.store.objects.get((bucket, key))
            if found is None:
                return self._error(404, "NoSuchKey", head=head)
            start, end, status = 0, found.size, 200
            headers = {
                "ETag": f'"{found.etag}"',
                "Last-Modified": formatdate(found.modified, usegmt=True),
                "Accept-Ranges": "bytes",
                "Content-Type": "application/octet-stream",
            }
            wanted = self.headers.get("Range")
            if wanted and wanted.startswith("bytes="):
                first, _, last = wanted[6:].partition("-")
                start = int(first)
                end = min(found.size, int(last) + 1) if last else found.size
                if start >= found.size:
                    return self._error(416, "InvalidRange", head=head)
                status = 206
                headers["Content-Range"] = f"bytes {start}-{end - 1}/{found.size}"
            # Opened under the lock, so a concurrent overwrite cannot unlink them before we read.
            pieces = [] if head else _open_range(found, start, end)
        self._reply(status, headers=headers, length=end - start)
        for file, begin, stop in pieces:
            with file:
                while begin < stop:
                    begin += os.sendfile(
                        self.connection.fileno(), file.fileno(), begin, stop - begin
                    )

    def _list(self, bucket: str, query: dict[str, list[str]]) -> None:
        prefix = query.get("prefix", [""])[0]
        after = query.get("continuation-token", query.get("start-after", [""]))[0]
        limit = int(query.get("max-keys", ["1000"])[0])
        url = query.get("encoding-type", [""])[0] == "url"
        with self.server.store.lock:
            keys = sorted(
                (key, stored)
                for (name, key), stored in self.server.store.objects.items()
                if name == bucket and key.startswith(prefix) and key > after
            )
        page, more = keys[:limit], len(keys) > limit
        rows = "".join(
            f"<Contents><Key>{_escape(quote(key) if url else key)}</Key>"
            f"<LastModified>{_iso(stored.modified)}</LastModified>"
            f'<ETag>"{stored.etag}"</ETag><Size>{stored.size}</Size>'
            "<StorageClass>STANDARD</StorageClass></Contents>"
            for key, stored in page
        )
        token = (
            f"<NextContinuationToken>{_escape(page[-1][0])}</NextContinuationToken>" if more else ""
        )
        self._xml(
            200,
            f'<ListBucketResult xmlns="{XMLNS}"><Name>{bucket}</Name>'
            f"<Prefix>{_escape(prefix)}</Prefix>"
            f"<KeyCount>{len(page)}</KeyCount><MaxKeys>{limit}</MaxKeys>"
            f"{'<EncodingType>url</EncodingType>' if url else ''}"
            f"<IsTruncated>{'true' if more else 'false'}</IsTruncated>{token}{rows}"
            "</ListBucketResult>",
        )

    # ---- bodies and replies -----------------------------------------------------------------

    def _read_body(self, target: Path | None, *, keep: bool = False) -> str | bytes:
        """Stream the request body to ``target`` (decoding aws-chunked); its MD5 hex, or the body
        itself with ``keep``."""
        length = int(self.headers.get("Content-Length") or 0)
        chunked = "aws-chunked" in self.headers.get("Content-Encoding", "") or self.headers.get(
            "x-amz-content-sha256", ""
        ).startswith("STREAMING")
        digest = hashlib.md5(usedforsecurity=False)
        kept = bytearray()
        out = target.open("wb") if target is not None else None
        try:
            for piece in _chunks(self.rfile, length) if not chunked else _aws_chunks(self.rfile):
                digest.update(piece)
                if out is not None:
                    out.write(piece)
                if keep:
                    kept += piece
        finally:
            if out is not None:
                out.close()
        return bytes(kept) if keep else digest.hexdigest()

    def _reply(
        self, status: int, *, headers: dict[str, str] | None = None, length: int = 0
    ) -> None:
        self.send_response(status)
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(length))
        self.end_headers()

    def _xml(self, status: int, body: str) -> None:
        data = ('<?xml version="1.0" encoding="UTF-8"?>' + body).encode()
        self._reply(status, headers={"Content-Type": "application/xml"}, length=len(data))
        self.wfile.write(data)

    def _error(self, status: int, code: str, *, head: bool = False) -> None:
        if head:
            return self._reply(status)
        self._xml(status, f"<Error><Code>{code}</Code><Message>{code}</Message></Error>")


def _chunks(stream, length: int):  # type: ignore[no-untyped-def]
    while length > 0:
        piece = stream.read(min(COPY_BYTES, length))
        if not piece:
            raise ConnectionResetError("request body ended early")
        length -= len(piece)
        yield piece


def _aws_chunks(stream):  # type: ignore[no-untyped-def]
    """The body of an aws-chunked upload: ``<hex size>[;…]\\r\\n<data>\\r\\n`` until size 0."""
    while True:
        size = int(stream.readline().split(b";")[0].strip() or b"0", 16)
        if size == 0:
            while stream.readline().strip():  # trailers, then the blank line
                pass
            return
        yield from _chunks(stream, size)
        stream.readline()


def _open_range(found: Stored, start: int, end: int) -> list[tuple[BinaryIO, int, int]]:
    """The part files holding bytes [start, end) of an object, each open, with its own span."""
    pieces: list[tuple[BinaryIO, int, int]] = []
    offset = 0  # where the current part begins in the object
    for part, size in zip(found.parts, found.sizes, strict=True):
        first, last = max(start, offset) - offset, min(end, offset + size) - offset
        if first < last:
            pieces.append((part.open("rb"), first, last))
        offset += size
    return pieces


def _escape(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _now() -> float:
    import time

    return time.time()


def _iso(stamp: float) -> str:
    import datetime

    return datetime.datetime.fromtimestamp(stamp, datetime.UTC).strftime("%Y-%m-%dT%H:%M:%S.000Z")


class Server(ThreadingHTTPServer):
    daemon_threads = True
    store: Store


def main() -> None:
    root = Path(sys.argv[1])
    root.mkdir(parents=True, exist_ok=True)
    server = Server(("127.0.0.1", 0), Handler)
    server.store = Store(root)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    print(f"http://127.0.0.1:{server.server_address[1]}", flush=True)
    sys.stdin.read()  # serve until the parent closes our stdin
    server.shutdown()


if __name__ == "__main__":
    main()
