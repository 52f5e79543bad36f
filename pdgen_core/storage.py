"""One way to reach storage: ``s3://`` and local paths through pyarrow filesystems and boto3.

Endpoint, region and credentials come from ``Settings`` (the environment), never from a spec, and
are never logged. delta-rs gets the same facts through ``delta_options``.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, TypeVar

import pyarrow.fs as pafs

from pdgen_core.errors import InputError
from pdgen_core.log import get_logger
from pdgen_core.settings import Settings, get_settings

T = TypeVar("T")


@dataclass(frozen=True)
class Location:
    """A parsed URI: ``fs`` plus the path inside it. ``uri`` is the normalised form."""

    uri: str
    fs: pafs.FileSystem
    path: str

    @property
    def is_s3(self) -> bool:
        return self.uri.startswith("s3://")

    def child(self, *parts: str) -> "Location":
        sub = "/".join(p.strip("/") for p in parts if p)
        return Location(f"{self.uri.rstrip('/')}/{sub}", self.fs, f"{self.path.rstrip('/')}/{sub}")


S3_MAX_ATTEMPTS = 8


class S3FileSystem(pafs.S3FileSystem):
    """pyarrow's S3 filesystem that keeps its retry strategy and timeouts when pickled.

    pyarrow's own ``__reduce__`` drops ``retry_strategy`` (and the timeouts), so the copies
    Ray ships to its workers fell back to 3 attempts: a burst of 503 SlowDown that the driver
    rode out failed a read task. This one rebuilds itself with the same arguments.
    """

    def __init__(self, max_attempts: int = S3_MAX_ATTEMPTS, **kw: Any):
        super().__init__(retry_strategy=pafs.AwsStandardS3RetryStrategy(max_attempts=max_attempts), **kw)
        self._pdgen_args = (max_attempts, kw)

    def __reduce__(self):
        return _rebuild_s3, self._pdgen_args

    @property
    def max_attempts(self) -> int:
        return self._pdgen_args[0]


# S3 errors worth another try after the SDK's own retries: the classes Ray Data retries in its
# read and write tasks (DataContext.retried_io_errors), which the driver's reads and commits get
# through ``retry_io``. INTERNAL_FAILURE is the one the SDK never retries: a 503's XML body that
# does not fit the buffer of a small ranged GET ends as "Failed to flush response stream".
TRANSIENT_IO_ERRORS = ("AWS Error INTERNAL_FAILURE", "AWS Error NETWORK_CONNECTION",
                       "AWS Error SLOW_DOWN", "AWS Error UNKNOWN (HTTP status 503)",
                       "AWS Error SERVICE_UNAVAILABLE", "Failed to flush response stream")
RETRY_IO_ATTEMPTS = 4


def is_transient_io_error(exc: BaseException) -> bool:
    seen = 0
    while exc is not None and seen < 8:  # the message, then its causes (delta-rs wraps them)
        if any(m in str(exc) for m in TRANSIENT_IO_ERRORS):
            return True
        exc, seen = exc.__cause__ or exc.__context__, seen + 1
    return False


def retry_io(fn: Callable[[], T], what: str, attempts: int = RETRY_IO_ATTEMPTS,
             backoff_s: float = 0.5) -> T:
    """``fn()``, again (up to ``attempts`` in all, with backoff) when it fails with a transient
    S3 error. ``fn`` must be safe to repeat: a read, or a commit that knows its own run."""

    for attempt in range(1, attempts + 1):
        try:
            return fn()
        except Exception as exc:
            if attempt == attempts or not is_transient_io_error(exc):
                raise
            get_logger().warning("storage.retry", what=what, attempt=attempt,
                                          error=str(exc).splitlines()[0][:200])
            time.sleep(backoff_s * 2 ** (attempt - 1))
    raise AssertionError("unreachable")


def _rebuild_s3(max_attempts: int, kw: dict[str, Any]) -> S3FileSystem:
    return S3FileSystem(max_attempts, **kw)


def s3_filesystem(settings: Settings | None = None) -> S3FileSystem:
    s = settings or get_settings()
    # pyarrow's retry strategy handles 503 SlowDown and resets: no hand-written loops.
    kw: dict[str, Any] = {"region": s.region, "connect_timeout": 10, "request_timeout": 60}
    if s.s3_endpoint:
        kw["endpoint_override"] = s.s3_endpoint_hostport
        kw["scheme"] = s.s3_scheme
    if s.access_key_id and s.secret_access_key:
        kw["access_key"] = s.access_key_id.get_secret_value()
        kw["secret_key"] = s.secret_access_key.get_secret_value()
        if s.session_token:
            kw["session_token"] = s.session_token.get_secret_value()
    return S3FileSystem(S3_MAX_ATTEMPTS, **kw)


def check_endpoint(settings: Settings | None = None, timeout_s: float = 5.0) -> None:
    """A set S3 endpoint (a local server, MinIO) that refuses connections fails here, in
    milliseconds, naming the variable to fix: otherwise the SDK retries every request with backoff
    for about a minute and then reports a generic network error. AWS (no endpoint) is not probed."""
    import socket
    from urllib.parse import urlsplit

    s = settings or get_settings()
    if not s.s3_endpoint:
        return
    u = urlsplit(s.s3_endpoint if "://" in s.s3_endpoint else f"http://{s.s3_endpoint}")
    port = u.port or (443 if u.scheme == "https" else 80)
    try:
        socket.create_connection((u.hostname, port), timeout=timeout_s).close()
    except OSError as exc:
        raise InputError(
            f"S3 endpoint {u.scheme}://{u.hostname}:{port} cannot be reached ({exc.strerror or exc}); "
            "start the S3 server, or set PDGEN_S3_ENDPOINT (or AWS_ENDPOINT_URL) to one that is "
            "up, or unset both for AWS") from None


def resolve(uri: str | os.PathLike, settings: Settings | None = None) -> Location:
    """Parse an ``s3://bucket/key`` or a local path (made absolute)."""
    u = str(uri)
    if u.startswith("s3://"):
        path = u[len("s3://"):].rstrip("/")
        if not path or path.startswith("/"):
            raise ValueError(f"{u!r} is not an S3 URI; use s3://bucket/prefix")
        return Location("s3://" + path, s3_filesystem(settings), path)
    if "://" in u and not u.startswith("file://"):
        raise ValueError(f"unsupported URI scheme in {u!r}; use s3://bucket/prefix or a local path")
    local = str(Path(u.removeprefix("file://")).expanduser().resolve())
    return Location(local, pafs.LocalFileSystem(), local)


def delta_options(settings: Settings | None = None) -> dict[str, str]:
    """Storage options for delta-rs (deltalake) for S3 URIs; empty for local paths."""
    s = settings or get_settings()
    opts = {"AWS_REGION": s.region, "conditional_put": "etag", "AWS_S3_ALLOW_UNSAFE_RENAME": "false"}
    if s.s3_endpoint:
        opts["AWS_ENDPOINT_URL"] = s.s3_endpoint
        if s.s3_scheme == "http":
            opts["AWS_ALLOW_HTTP"] = "true"
    if s.access_key_id and s.secret_access_key:
        opts["AWS_ACCESS_KEY_ID"] = s.access_key_id.get_secret_value()
        opts["AWS_SECRET_ACCESS_KEY"] = s.secret_access_key.get_secret_value()
        if s.session_token:
            opts["AWS_SESSION_TOKEN"] = s.session_token.get_secret_value()
    # delta-rs' object_store retries 5xx and resets with backoff by itself. A request that gets
    # no answer is cut at 30 s and retried; idle pooled connections are not reused, because a
    # keep-alive connection the server already dropped hung a listing for 120 s against
    # moto's server (the "history() hung" note in the README's "Notes from building it").
    opts["max_retries"] = "8"
    opts["retry_timeout"] = "180s"
    opts["timeout"] = "30s"
    opts["connect_timeout"] = "10s"
    opts["pool_max_idle_per_host"] = "0"
    return opts


def table_options(loc: Location) -> dict[str, str] | None:
    return delta_options() if loc.is_s3 else None


def table_filesystem(loc: Location) -> pafs.FileSystem:
    """A native pyarrow filesystem rooted at the Delta table ``loc``, for
    ``DeltaTable.to_pyarrow_dataset(filesystem=...)``. deltalake's default, a ``PyFileSystem``
    over Python, can abort the interpreter at exit (rc 134, "terminate called without an active
    exception"): see tests/test_delta_readers.py."""
    return pafs.SubTreeFileSystem(loc.path, loc.fs)


def boto3_client(settings: Settings | None = None):
    """A boto3 S3 client with adaptive retries (503 SlowDown, throttling, resets)."""
    import boto3
    from botocore.config import Config

    s = settings or get_settings()
    kw: dict[str, Any] = {
        "region_name": s.region,
        "config": Config(retries={"max_attempts": 8, "mode": "adaptive"}, connect_timeout=10, read_timeout=60),
    }
    if s.s3_endpoint:
        kw["endpoint_url"] = s.s3_endpoint
    if s.access_key_id and s.secret_access_key:
        kw["aws_access_key_id"] = s.access_key_id.get_secret_value()
        kw["aws_secret_access_key"] = s.secret_access_key.get_secret_value()
        if s.session_token:
            kw["aws_session_token"] = s.session_token.get_secret_value()
    return boto3.client("s3", **kw)


def split_s3(uri: str) -> tuple[str, str]:
    bucket, _, key = uri[len("s3://"):].partition("/")
    return bucket, key


def write_bytes(loc: Location, data: bytes) -> None:
    parent = loc.path.rsplit("/", 1)[0]
    if not loc.is_s3:
        loc.fs.create_dir(parent, recursive=True)
    with loc.fs.open_output_stream(loc.path) as f:
        f.write(data)


def read_bytes(loc: Location) -> bytes:
    def read() -> bytes:
        with loc.fs.open_input_stream(loc.path) as f:
            return f.read()
    return retry_io(read, f"read {loc.uri}")


def write_json(loc: Location, obj: Any) -> None:
    write_bytes(loc, json.dumps(obj, indent=2, sort_keys=True, default=str).encode())


def read_json(loc: Location) -> Any:
    return json.loads(read_bytes(loc))


def exists(loc: Location) -> bool:
    return loc.fs.get_file_info(loc.path).type != pafs.FileType.NotFound


def list_files(loc: Location, suffix: str = "", hidden: bool = False) -> list[str]:
    """Paths (inside ``loc.fs``) of the files under ``loc``, or ``[loc.path]`` for a file.

    Names starting with ``_`` or ``.`` (staging, markers, Delta logs) are skipped unless ``hidden``.
    A listing is a read: transient S3 errors repeat it (``retry_io``).
    """
    def listing() -> list[str]:
        info = loc.fs.get_file_info(loc.path)
        if info.type == pafs.FileType.File:
            return [loc.path]
        if info.type == pafs.FileType.NotFound:
            return []
        sel = pafs.FileSelector(loc.path, recursive=True)
        return sorted(
            i.path for i in loc.fs.get_file_info(sel)
            if i.type == pafs.FileType.File and i.path.endswith(suffix)
            and (hidden or not any(part.startswith(("_", ".")) for part in i.path[len(loc.path):].split("/") if part))
        )

    return retry_io(listing, f"list {loc.uri}")


def delete_tree(loc: Location) -> None:
    if exists(loc):
        loc.fs.delete_dir(loc.path)


def download_prefix(loc: Location, dest: Path) -> Path:
    """Copy every file under an S3 prefix to a local folder (atomic: temp folder then rename)."""
    files = list_files(loc, hidden=True)
    if not files:
        raise FileNotFoundError(f"nothing under {loc.uri}; check the URI and that the upload finished")
    tmp = dest.with_name(dest.name + f".tmp{os.getpid()}")
    for f in files:
        rel = f[len(loc.path):].lstrip("/")
        out = tmp / rel
        out.parent.mkdir(parents=True, exist_ok=True)
        with loc.fs.open_input_stream(f) as src, open(out, "wb") as dst:
            while chunk := src.read(1 << 22):
                dst.write(chunk)
    dest.parent.mkdir(parents=True, exist_ok=True)
    try:
        os.rename(tmp, dest)
    except OSError:  # another process on this node won the race: keep theirs
        import shutil

        shutil.rmtree(tmp, ignore_errors=True)
    return dest


def upload_dir(src: Path, loc: Location) -> None:
    for p in sorted(Path(src).rglob("*")):
        if p.is_file():
            write_bytes(loc.child(str(p.relative_to(src))), p.read_bytes())


def plain_types(table):
    """``table`` (a pyarrow Table or RecordBatch) with view types cast to their plain forms.

    Files written by a Delta merge (DataFusion) and by recent polars hold ``string_view`` and
    ``binary_view`` columns. Arrow has no kernels mixing them with ``string``: joins against
    plain-typed data (``array_take``), filters with string literals and block concatenation
    all fail. Every read of data pdgen did not write itself in this run goes through here.
    """
    import pyarrow as pa

    fields = []
    changed = False
    for f in table.schema:
        if pa.types.is_string_view(f.type):
            f, changed = f.with_type(pa.string()), True
        elif pa.types.is_binary_view(f.type):
            f, changed = f.with_type(pa.binary()), True
        fields.append(f)
    return table.cast(pa.schema(fields, metadata=table.schema.metadata)) if changed else table
