"""docs/scaling-out.md's examples run, in order, against real parts: a real redis-server (the
page's ``redis.internal:6379``, with its password) and the docs suite's TLS submission server
(``smtp.example.com``, ``smtp.office365.com``). The generic docs harness leaves this page to
this test, since it has no Redis.

The Celery example's module is written to ``myproject/mail.py`` as the page says, with one line
added: ``task_always_eager`` (the tasks run in the producer's process: the real workers are
exercised by ``test_celery_cluster.py``).
"""

from __future__ import annotations

import json
import os
import pathlib
import re
import subprocess
import sys

import pytest
import trustme

pytest.importorskip("redis", reason="the redis extra is not installed")
pytest.importorskip("celery", reason="the celery extra is not installed")
pytest.importorskip("django", reason="the django extra is not installed")

from tests._support.redis_server import SKIP_REASON, find_redis, start_redis
from tests.docs._servers import PASSWORD, docs_servers

pytestmark = pytest.mark.redis

ROOT = pathlib.Path(__file__).resolve().parents[2]
PAGE = ROOT / "docs" / "scaling-out.md"
BOOTSTRAP = ROOT / "tests" / "docs" / "_bootstrap.py"
FENCE = re.compile(r"^```python[^\n]*\n(.*?)^```", re.M | re.S)
MODULE = "# myproject/mail.py"


def test_the_scaling_out_examples_run(tls_ca: trustme.CA, tmp_path: pathlib.Path) -> None:
    if find_redis() is None:
        pytest.skip(SKIP_REASON)
    blocks = FENCE.findall(PAGE.read_text(encoding="utf-8"))
    [module] = [b for b in blocks if b.startswith(MODULE)]
    package = tmp_path / "myproject"
    package.mkdir()
    (package / "__init__.py").write_text("", encoding="utf-8")
    (package / "mail.py").write_text(module + "\napp.conf.task_always_eager = True\n")
    script = tmp_path / "example_scaling_out.py"
    script.write_text("\n\n".join(b for b in blocks if b is not module), encoding="utf-8")
    (tmp_path / "servers").mkdir()
    with docs_servers(tls_ca, tmp_path / "servers") as servers, start_redis("password") as redis:
        hosts = {**servers.hosts, "redis.internal:6379": redis.port}
        env = {k: v for k, v in os.environ.items() if not k.startswith(("MAILSDK_", "SSL_CERT"))}
        env.update(
            MAILSDK_DOCS_HOSTS=json.dumps(hosts),
            SSL_CERT_FILE=str(servers.ca_file),
            REQUESTS_CA_BUNDLE=str(servers.ca_file),
            SMTP_PASSWORD=PASSWORD,
            PYTHONPATH=str(tmp_path),
            PYTHONDONTWRITEBYTECODE="1",
            HOME=str(tmp_path),
        )
        proc = subprocess.run(
            [sys.executable, str(BOOTSTRAP), str(script)],
            cwd=tmp_path,
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        assert proc.returncode == 0, f"{proc.stdout}\n{proc.stderr}"
        sent = [m.content for m in servers.submission.recorder.messages]
    # The pool example's three messages and the Celery fan-out's three, each once.
    assert sum(1 for c in sent if b"Subject: news" in c) == 6, sent
    assert [f"news-{n} accepted" in proc.stdout for n in range(3)] == [True] * 3
    assert "3 messages in" in proc.stdout and "accepted 3" in proc.stdout
    assert PASSWORD not in proc.stdout + proc.stderr
