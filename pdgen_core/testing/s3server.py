"""A local S3 endpoint on 127.0.0.1: moto's server, which speaks the real S3 protocol over HTTP
(and enforces conditional puts). Used by the demo, the tests and ``make local-ray``.

The server runs in its own process. In a thread of the caller's process it deadlocks against
delta-rs: calls such as ``DeltaTable.restore`` and ``history`` hold the GIL while they wait on
HTTP, so the server thread can never answer (the "history() hung for 180 s" note in the README's "Notes from building it").

``python -m pdgen_core.testing.s3server --port 9000`` runs one in the foreground.
"""

from __future__ import annotations

import os
import sys
import urllib.request
from contextlib import contextmanager

from pdgen_core.testing.child import Child, free_port

TEST_KEY_ID = "pdgen-local-key"
TEST_SECRET = "pdgen-local-secret"


class LocalS3:
    """Start/stop moto's server; ``env`` holds the variables that point pdgen and boto3 at it."""

    def __init__(self, port: int | None = None, buckets: tuple[str, ...] = ()):
        self.port = port or free_port()
        self.buckets = buckets
        self._proc = None

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def env(self) -> dict[str, str]:
        return {
            "AWS_ENDPOINT_URL": self.endpoint,
            "AWS_ACCESS_KEY_ID": TEST_KEY_ID,
            "AWS_SECRET_ACCESS_KEY": TEST_SECRET,
            "AWS_REGION": "us-east-1",
            "AWS_DEFAULT_REGION": "us-east-1",
        }

    def start(self, timeout: float = 60.0) -> "LocalS3":
        self._proc = Child([sys.executable, "-m", "pdgen_core.testing.s3server", "--serve",
                            "--port", str(self.port)]).start(
            lambda: urllib.request.urlopen(self.endpoint + "/moto-api/", timeout=2).read(),
            timeout=timeout, failure=lambda: f"local S3 server did not start on {self.endpoint}")
        for b in self.buckets:
            self.create_bucket(b)
        return self

    def create_bucket(self, name: str) -> None:
        import boto3

        s3 = boto3.client("s3", endpoint_url=self.endpoint, region_name="us-east-1",
                          aws_access_key_id=TEST_KEY_ID, aws_secret_access_key=TEST_SECRET)
        try:
            s3.create_bucket(Bucket=name)
        except s3.exceptions.BucketAlreadyOwnedByYou:
            pass

    def stop(self) -> None:
        if self._proc is not None:
            self._proc.stop()
            self._proc = None


@contextmanager
def local_s3(buckets: tuple[str, ...] = (), set_env: bool = True):
    """Run a local S3 endpoint for the duration; optionally export its variables."""
    srv = LocalS3(buckets=buckets).start()
    saved = {k: os.environ.get(k) for k in srv.env}
    if set_env:
        os.environ.update(srv.env)
    try:
        yield srv
    finally:
        if set_env:
            for k, v in saved.items():
                if v is None:
                    os.environ.pop(k, None)
                else:
                    os.environ[k] = v
        srv.stop()


def serve(port: int) -> None:
    """Serve in this process until killed (what ``LocalS3.start`` runs)."""
    from moto.server import ThreadedMotoServer

    ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False).start()
    import threading

    threading.Event().wait()


def main() -> None:  # pragma: no cover - manual use and make local-ray
    import argparse
    import time

    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--port", type=int, default=9000)
    ap.add_argument("--bucket", action="append", default=[])
    ap.add_argument("--serve", action="store_true", help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.serve:
        serve(a.port)
        return
    srv = LocalS3(port=a.port, buckets=tuple(a.bucket)).start()
    print(f"local S3 at {srv.endpoint}", flush=True)
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        srv.stop()


if __name__ == "__main__":
    main()
