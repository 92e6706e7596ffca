"""Run one page's examples with every mail and identity host pointed at in-process servers.

Not collected: ``tests/docs/test_examples.py`` runs ``python _bootstrap.py EXAMPLE.py`` with
``MAILSDK_DOCS_HOSTS`` (a JSON map ``"host:port" -> local port``). Name resolution is patched so
``mail.example.com:587``, ``smtp.office365.com:587``, ``login.microsoftonline.com:443`` and the
others reach loopback servers, and every other name fails: an example can never reach the
network. TLS stays verified: the servers' certificates carry those names and chain to the CA in
``SSL_CERT_FILE`` / ``REQUESTS_CA_BUNDLE``.
"""

from __future__ import annotations

import json
import os
import runpy
import socket
import sys

HOSTS: dict[str, int] = json.loads(os.environ["MAILSDK_DOCS_HOSTS"])
_real_getaddrinfo = socket.getaddrinfo


def _getaddrinfo(host, port, family=0, type=0, proto=0, flags=0):  # type: ignore[no-untyped-def]
    name = host.decode() if isinstance(host, bytes) else str(host)
    key = f"{name.lower()}:{port}"
    if key in HOSTS:
        return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", ("127.0.0.1", HOSTS[key]))]
    if name in ("127.0.0.1", "localhost", "::1"):
        return _real_getaddrinfo(host, port, family, type, proto, flags)
    raise socket.gaierror(socket.EAI_NONAME, f"docs examples reach only the test servers: {key}")


socket.getaddrinfo = _getaddrinfo  # type: ignore[assignment]

if __name__ == "__main__":
    sys.argv = sys.argv[1:]
    runpy.run_path(sys.argv[0], run_name="__main__")
