"""The blocking dialer's lookup threads after ``fork``: a child must resolve on its own.

The lookups run in daemon worker threads that wait for more work once done. A forked child has
none of those threads, so it must not count its parent's idle ones (it once queued its lookup
for a thread that did not exist and waited until the deadline: forever without one). Celery's
prefork workers and ``send_batch(processes=...)`` fork after the parent may have connected.
"""

from __future__ import annotations

import os
import time

import pytest

from mailsdk.transport import AddrInfo
from mailsdk.transport._dialer import resolve

pytestmark = pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")


def _local(host: str, port: int) -> list[AddrInfo]:
    """A resolver that answers at once (the lookup still runs in a worker thread)."""
    return [(2, 1, 6, "", ("127.0.0.1", port))]


def test_a_forked_child_resolves_although_its_parent_has_idle_lookup_threads() -> None:
    assert resolve("mail.test", 25, _local, time.monotonic() + 5)  # leaves an idle worker
    pid = os.fork()
    if pid == 0:  # the child: exit 0 if the lookup answered, 1 if it timed out
        code = 1
        try:
            code = 0 if resolve("mail.test", 25, _local, time.monotonic() + 5) else 1
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
