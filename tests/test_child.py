"""pdgen_core.testing.child: the one spawn / poll / terminate / kill helper of the harness."""

from __future__ import annotations

import sys
import urllib.request

import pytest

from pdgen_core.testing.child import Child, free_port, free_ports


def test_free_ports_are_distinct():
    ports = free_ports(5)
    assert len(set(ports)) == 5 and all(p > 0 for p in ports) and free_port() > 0


def test_a_child_starts_answers_and_stops():
    port = free_port()
    child = Child([sys.executable, "-m", "http.server", str(port), "--bind", "127.0.0.1"])
    child.start(lambda: urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=2).read(),
                timeout=30)
    proc = child.proc
    child.stop()
    assert proc.poll() is not None and child.proc is None
    child.stop()  # twice is fine


def test_a_child_that_exits_fails_its_start_with_the_message():
    child = Child([sys.executable, "-c", "raise SystemExit(3)"])
    with pytest.raises(RuntimeError, match="no server here"):
        child.start(lambda: urllib.request.urlopen(f"http://127.0.0.1:{free_port()}/", timeout=1),
                    timeout=30, failure=lambda: "no server here")
    assert child.proc is None
