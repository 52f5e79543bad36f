"""Helper processes (the local S3 server, the fault proxy, a Ray head): spawn in a session of their
own, poll until they answer, and stop them with SIGTERM, then SIGKILL after a grace period.

One implementation for all of them; each had its own copy of this loop and of ``free_port``.
"""

from __future__ import annotations

import socket
import subprocess
import time
from typing import Callable, Sequence


def free_ports(n: int) -> list[int]:
    """``n`` distinct ports free on 127.0.0.1 now (all bound at once, so no two are the same)."""
    socks = [socket.socket() for _ in range(n)]
    try:
        for s in socks:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def free_port() -> int:
    return free_ports(1)[0]


class Child:
    """One child process: ``start`` spawns it and returns once ``ready()`` stops raising."""

    def __init__(self, argv: Sequence[str], *, env: dict[str, str] | None = None,
                 stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL):
        self.argv, self.env, self.stdout, self.stderr = list(argv), env, stdout, stderr
        self.proc: subprocess.Popen | None = None

    def start(self, ready: Callable[[], object], *, timeout: float, poll_s: float = 0.2,
              errors: tuple[type[BaseException], ...] = (OSError,),
              failure: Callable[[], str] = lambda: "did not start",
              stop_on_failure: bool = True) -> Child:
        """Spawn, then call ``ready`` every ``poll_s`` until it returns without one of ``errors``.
        If the process exits or ``timeout`` passes first, raise RuntimeError(``failure()``)."""
        self.proc = subprocess.Popen(self.argv, env=self.env, stdout=self.stdout, stderr=self.stderr,
                                     start_new_session=True)
        deadline = time.monotonic() + timeout
        while True:
            try:
                ready()
                return self
            except errors:
                if self.proc.poll() is not None or time.monotonic() > deadline:
                    if stop_on_failure:
                        self.stop()
                    raise RuntimeError(failure()) from None
                time.sleep(poll_s)

    def stop(self, grace_s: float = 10.0) -> None:
        """SIGTERM; SIGKILL if it has not exited after ``grace_s``. Safe to call twice."""
        if self.proc is None:
            return
        self.proc.terminate()
        try:
            self.proc.wait(timeout=grace_s)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=grace_s)
        self.proc = None
