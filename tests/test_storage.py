"""pdgen_core.storage: local and S3 locations, retries, listings and a dead endpoint."""

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from pdgen_core import storage
from pdgen_core.settings import get_settings


def test_local_paths_resolve_absolute(tmp_path):
    loc = storage.resolve(str(tmp_path / "a" / ".." / "b"))
    assert loc.uri == str(tmp_path / "b") and not loc.is_s3
    storage.write_json(loc.child("x", "r.json"), {"k": 1})
    assert storage.read_json(loc.child("x", "r.json")) == {"k": 1}
    assert storage.list_files(loc) == [str(tmp_path / "b" / "x" / "r.json")]


def test_bad_uris_are_refused():
    with pytest.raises(ValueError, match="unsupported URI scheme"):
        storage.resolve("gs://bucket/x")
    with pytest.raises(ValueError, match="not an S3 URI"):
        storage.resolve("s3://")


def test_s3_roundtrip_over_http(bucket, tmp_path):
    loc = storage.resolve(f"{bucket}/data")
    assert loc.is_s3
    pq.write_table(pa.table({"a": [1, 2]}), loc.child("f.parquet").path, filesystem=loc.fs)
    storage.write_json(loc.child("_meta.json"), {"ok": True})
    assert storage.list_files(loc, ".parquet") == [loc.child("f.parquet").path]
    assert storage.exists(loc.child("_meta.json"))
    got = storage.download_prefix(loc, tmp_path / "copy")
    assert (got / "f.parquet").exists() and (got / "_meta.json").exists()


def test_boto3_conditional_put_is_enforced(bucket):
    from botocore.exceptions import ClientError

    s3 = storage.boto3_client()
    b = bucket.removeprefix("s3://")
    s3.put_object(Bucket=b, Key="ptr", Body=b"1", IfNoneMatch="*")
    with pytest.raises(ClientError) as ei:
        s3.put_object(Bucket=b, Key="ptr", Body=b"2", IfNoneMatch="*")
    assert ei.value.response["Error"]["Code"] in ("PreconditionFailed", "412")


def test_settings_hide_secrets(monkeypatch):
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "sentinel-secret-123")
    s = get_settings()
    assert "sentinel-secret-123" not in repr(s)
    assert "sentinel-secret-123" in s.secret_values()
    opts = storage.delta_options()
    assert opts["AWS_SECRET_ACCESS_KEY"] == "sentinel-secret-123"


def test_s3_filesystem_keeps_retries_and_timeouts_when_pickled(bucket):
    """Ray ships filesystems to workers by pickling; pyarrow's own pickling dropped the retry
    strategy (back to 3 attempts) and the timeouts."""
    import pickle

    import cloudpickle

    loc = storage.resolve(f"{bucket}/p/x.bin")
    storage.write_bytes(loc, b"hello")
    for dumps in (pickle.dumps, cloudpickle.dumps):
        fs = pickle.loads(dumps(loc.fs))
        assert isinstance(fs, storage.S3FileSystem) and fs.max_attempts == storage.S3_MAX_ATTEMPTS
        args = fs.__reduce__()[1][1]
        assert args["connect_timeout"] == 10 and args["request_timeout"] == 60
        with fs.open_input_stream(loc.path) as f:
            assert f.read() == b"hello"


def test_a_dead_endpoint_fails_at_once_naming_the_variable(s3, monkeypatch):
    """An S3 endpoint that refuses connections stops a job before its first request (the SDK
    would retry it for about a minute); the message names the variable to fix. The live local
    server passes, and AWS (no endpoint) is not probed."""
    import socket

    from pdgen_core.errors import InputError, exit_code
    from pdgen_core.settings import Settings

    storage.check_endpoint(Settings(s3_endpoint=s3.endpoint))
    storage.check_endpoint(Settings(s3_endpoint=None))
    with socket.socket() as sock:  # a port that was free a moment ago: nothing listens on it
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    with pytest.raises(InputError) as ei:  # pdgen's own error: the SDK's retries never ran
        storage.check_endpoint(Settings(s3_endpoint=f"http://127.0.0.1:{port}"))
    assert f"127.0.0.1:{port}" in str(ei.value) and "PDGEN_S3_ENDPOINT" in str(ei.value)
    assert exit_code(ei.value) == 2
