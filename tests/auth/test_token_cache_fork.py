"""A token cache after ``fork``: a child must not inherit its parent's refresh in progress.

``send_batch(processes=...)`` (and Celery's prefork workers) fork while other threads of the
parent may be refreshing a token under the cache's lock. The child has none of those threads,
so a lock copied in the held state would never be released there: its first connection would
wait forever (and the batch's parent with it).
"""

from __future__ import annotations

import os
import signal
import threading
import time

import pytest

from mailsdk.auth.tokens import AccessToken, CachingTokenProvider

pytestmark = pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")


class _SlowInParentThread:
    """Refreshes slowly in the parent's "refresher" thread, at once anywhere else."""

    def __init__(self) -> None:
        self.entered = threading.Event()
        self.release = threading.Event()

    def get_token(self, *, force_refresh: bool = False) -> AccessToken:
        if threading.current_thread().name == "refresher":
            self.entered.set()
            self.release.wait(10)
        return AccessToken("tok-secret", expires_at=time.time() + 3600)


def test_a_forked_child_refreshes_although_its_parent_was_refreshing() -> None:
    inner = _SlowInParentThread()
    cached = CachingTokenProvider(inner)
    refresher = threading.Thread(target=cached.get_token, name="refresher")
    refresher.start()
    try:
        assert inner.entered.wait(5)  # the parent's refresh holds the cache's lock now
        pid = os.fork()
        if pid == 0:  # the child: exit 0 with a token; SIGALRM kills a deadlocked one
            code = 1
            try:
                signal.alarm(5)
                code = 0 if cached.get_token().token.reveal() == "tok-secret" else 1
            finally:
                os._exit(code)
        _, status = os.waitpid(pid, 0)
    finally:
        inner.release.set()
        refresher.join()
    assert os.waitstatus_to_exitcode(status) == 0
