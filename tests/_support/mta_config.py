"""Binaries, directory layout and config files for the private Postfix + Dovecot (``mta`` suite).

Layer: test support only: finds the programs and writes files (no processes, no sockets); used by
``tests/_support/mta.py``. May import the standard library and ``attrs``; must never import
``mailsdk``. Everything it writes lives under one private root directory; nothing in ``/etc``,
``/var`` or ``/run`` is read for configuration or written.
"""

from __future__ import annotations

import grp
import os
import pwd
import shutil
import time
from collections.abc import Iterable
from pathlib import Path

import attrs

__all__ = [
    "DOMAIN",
    "MAIL_USER",
    "MESSAGE_SIZE_LIMIT",
    "SERVER_NAME",
    "SKIP_REASON",
    "Binaries",
    "Layout",
    "Ports",
    "find_binaries",
    "find_missing",
    "write_config_tree",
]

DOMAIN = "example.test"
SERVER_NAME = "mx.example.test"
MESSAGE_SIZE_LIMIT = 1024 * 1024
SKIP_REASON = "install postfix dovecot-core dovecot-lmtpd (scripts/install-mta.sh) to run"
_SBIN = ("/usr/sbin", "/usr/local/sbin", "/sbin")
_POSTFIX_DAEMON_DIRS = ("/usr/lib/postfix/sbin", "/usr/libexec/postfix", "/usr/lib/postfix")
_DOVECOT_LIBEXEC_DIRS = ("/usr/lib/dovecot", "/usr/libexec/dovecot")
MAIL_USER = "mail"  # owner of the delivered Maildirs (uid 8 on Debian); never root (Dovecot)


@attrs.frozen
class Ports:
    """The TCP ports of one instance (all on 127.0.0.1)."""

    smtp: int
    smtps: int
    lmtp: int


@attrs.frozen
class Layout:
    """Where everything lives under the private ``root`` directory."""

    root: Path

    @property
    def postfix(self) -> Path:
        """Postfix ``config_directory`` (main.cf, master.cf, vmailbox)."""
        return self.root / "postfix"

    @property
    def dovecot(self) -> Path:
        """Dovecot config, passwd-file and sockets (``auth-client``, ``lmtp``)."""
        return self.root / "dovecot"

    @property
    def auth_socket(self) -> Path:
        """Dovecot auth socket Postfix's smtpd uses for SASL."""
        return self.dovecot / "auth-client"

    @property
    def lmtp_socket(self) -> Path:
        """Dovecot LMTP unix socket (Postfix delivers through it; tests may use it too)."""
        return self.dovecot / "lmtp"

    @property
    def tls(self) -> Path:
        """``ca.pem`` (the trustme CA) and ``server.pem`` (key + chain)."""
        return self.root / "tls"

    @property
    def logs(self) -> Path:
        """``postfix.log``, ``dovecot.log`` and the processes' own output."""
        return self.root / "log"

    @property
    def mail(self) -> Path:
        """Maildirs ``mail/<domain>/<local part>/``, written by Postfix virtual and Dovecot."""
        return self.root / "mail"


def _which(name: str, extra_dirs: tuple[str, ...] = _SBIN) -> str | None:
    found = shutil.which(name)
    if found:
        return found
    for directory in extra_dirs:
        candidate = Path(directory) / name
        if candidate.is_file() and os.access(candidate, os.X_OK):
            return str(candidate)
    return None


@attrs.frozen
class Binaries:
    """The server programs to start."""

    postfix_master: str
    dovecot: str


def find_binaries() -> tuple[Binaries | None, list[str]]:
    """Locate Postfix's ``master`` and ``dovecot``.

    Returns:
        ``(binaries, [])`` when everything is installed, else ``(None, missing package names)``.
    """
    missing: list[str] = []
    master = next(
        (str(Path(d) / "master") for d in _POSTFIX_DAEMON_DIRS if (Path(d) / "master").is_file()),
        None,
    )
    if master is None or _which("postfix") is None:
        missing.append("postfix")
    dovecot = _which("dovecot")
    if dovecot is None:
        missing.append("dovecot-core")
    if not any((Path(d) / "lmtp").is_file() for d in _DOVECOT_LIBEXEC_DIRS):
        missing.append("dovecot-lmtpd")
    if missing or master is None or dovecot is None:
        return None, missing
    return Binaries(postfix_master=master, dovecot=dovecot), []


def find_missing() -> str | None:
    """Say why the suite cannot run here, or ``None`` when it can.

    Returns:
        A skip reason naming the missing packages (and how to install them), or saying root is
        needed (Postfix's ``master`` must start as root), or ``None``.
    """
    _, missing = find_binaries()
    if missing:
        return f"missing {', '.join(missing)}: {SKIP_REASON}"
    if os.geteuid() != 0:
        return "the mta suite must run as root (Postfix master and Dovecot need it)"
    return None


def _postfix_main_cf(layout: Layout) -> str:
    root = layout.root
    mail_pw = pwd.getpwnam(MAIL_USER)
    mail_uid, mail_gid = mail_pw.pw_uid, mail_pw.pw_gid
    return f"""\
compatibility_level = 3.6
config_directory = {layout.postfix}
queue_directory = {root / "spool"}
data_directory = {root / "data"}
mail_owner = postfix
setgid_group = postdrop
maillog_file = {layout.logs / "postfix.log"}
maillog_file_prefixes = {root}
myhostname = {SERVER_NAME}
mydomain = {DOMAIN}
myorigin = $mydomain
mydestination =
mynetworks = 127.0.0.0/8
inet_interfaces = 127.0.0.1
inet_protocols = ipv4
smtpd_peername_lookup = no
alias_maps =
alias_database =
local_recipient_maps =
biff = no
append_dot_mydomain = no
readme_directory = no
smtpd_banner = $myhostname ESMTP mailsdk-test
# Never add Message-ID/Date/From: what the client sent is what lands in the Maildir.
local_header_rewrite_clients =
# The test domain is delivered by virtual(8) into the same Maildirs Dovecot LMTP writes to.
# (Not via Dovecot LMTP: Dovecot 2.3 LMTP has no SMTPUTF8 and no DSN, so Postfix would bounce
# UTF-8 headers with 5.6.7 and report NOTIFY=SUCCESS as "relayed".)
virtual_mailbox_domains = {DOMAIN}
virtual_mailbox_base = {layout.mail}
virtual_mailbox_maps = texthash:{layout.postfix / "vmailbox"}
virtual_uid_maps = static:{mail_uid}
virtual_gid_maps = static:{mail_gid}
virtual_minimum_uid = 1
virtual_transport = virtual
unknown_virtual_mailbox_reject_code = 550
smtpd_reject_unlisted_recipient = yes
# Nothing ever leaves the machine: other domains (relayed after AUTH) are discarded.
default_transport = discard:test instance, nothing leaves
relay_transport = discard:test instance, nothing leaves
smtpd_relay_restrictions = permit_sasl_authenticated, reject_unauth_destination
message_size_limit = {MESSAGE_SIZE_LIMIT}
smtputf8_enable = yes
smtpd_discard_ehlo_keywords =
smtpd_tls_security_level = may
smtpd_tls_chain_files = {layout.tls / "server.pem"}
smtpd_tls_auth_only = yes
smtpd_tls_loglevel = 1
smtpd_sasl_auth_enable = yes
smtpd_sasl_type = dovecot
smtpd_sasl_path = {layout.auth_socket}
smtpd_sasl_security_options = noanonymous
smtpd_sasl_tls_security_options = noanonymous
in_flow_delay = 0
"""


# name, type, private, unprivileged, chroot, wakeup, maxproc, command. chroot is "n" everywhere:
# the SASL and LMTP sockets are absolute paths outside the queue directory.
_SERVICES = """\
cleanup unix n - n - 0 cleanup
qmgr unix n - n 300 1 qmgr
tlsmgr unix - - n 1000? 1 tlsmgr
rewrite unix - - n - - trivial-rewrite
bounce unix - - n - 0 bounce
defer unix - - n - 0 bounce
trace unix - - n - 0 bounce
verify unix - - n - 1 verify
flush unix n - n 1000? 0 flush
proxymap unix - - n - - proxymap
smtp unix - - n - - smtp
relay unix - - n - - smtp
showq unix n - n - - showq
error unix - - n - - error
retry unix - - n - - error
discard unix - - n - - discard
lmtp unix - - n - - lmtp
virtual unix - n n - - virtual
anvil unix - - n - 1 anvil
scache unix - - n - 1 scache
postlog unix-dgram n - n - 1 postlogd
"""


def _postfix_master_cf(ports: Ports) -> str:
    return (
        f"127.0.0.1:{ports.smtp} inet n - n - - smtpd\n"
        f"127.0.0.1:{ports.smtps} inet n - n - - smtpd\n"
        "  -o smtpd_tls_wrappermode=yes\n"
        "  -o smtpd_tls_security_level=encrypt\n" + _SERVICES
    )


def _dovecot_conf(layout: Layout, ports: Ports) -> str:
    d = layout.dovecot
    return f"""\
base_dir = {d / "run"}
state_dir = {d / "state"}
instance_name = mailsdk-test-{layout.root.name}
listen = 127.0.0.1
protocols = lmtp
ssl = no
hostname = lmtp.{DOMAIN}
log_path = {layout.logs / "dovecot.log"}
auth_verbose = yes
auth_failure_delay = 0
disable_plaintext_auth = no
auth_mechanisms = plain login cram-md5 scram-sha-1 scram-sha-256 xoauth2 oauthbearer
default_internal_user = dovecot
default_login_user = dovenull
first_valid_uid = 1
mail_location = maildir:{layout.mail}/%d/%n
passdb {{
  driver = passwd-file
  args = scheme=PLAIN username_format=%u {d / "users"}
  mechanisms = plain login cram-md5 scram-sha-1 scram-sha-256
}}
passdb {{
  driver = oauth2
  mechanisms = xoauth2 oauthbearer
  args = {d / "oauth2.conf.ext"}
}}
userdb {{
  driver = passwd-file
  args = username_format=%u {d / "users"}
  default_fields = uid={MAIL_USER} gid={MAIL_USER} home={layout.mail}/%d/%n
}}
# No auth penalty (anvil's growing delay, 2 s up to 15 s, after failures from one IP): the
# suite fails logins from 127.0.0.1 on purpose. Mode 0 = auth cannot connect = disabled.
service anvil {{
  unix_listener anvil-auth-penalty {{
    mode = 0
  }}
}}
service auth {{
  unix_listener {layout.auth_socket} {{
    mode = 0666
  }}
}}
service lmtp {{
  inet_listener lmtp {{
    address = 127.0.0.1
    port = {ports.lmtp}
  }}
  unix_listener {layout.lmtp_socket} {{
    mode = 0666
  }}
}}
"""


def _oauth2_conf(introspection_url: str) -> str:
    # RFC 7662 token introspection: POST token=..., expect {"active": true, "username": ...}.
    return f"""\
introspection_mode = post
introspection_url = {introspection_url}
force_introspection = yes
username_attribute = username
active_attribute = active
active_value = true
timeout_msecs = 5000
"""


def _make_postfix_dirs(root: Path) -> None:
    """Create queue and data directories as ``postfix-files`` wants them (no post-install)."""
    postfix_uid = pwd.getpwnam("postfix").pw_uid
    postdrop_gid = grp.getgrnam("postdrop").gr_gid
    spool = root / "spool"
    spool.mkdir(mode=0o755)
    (spool / "pid").mkdir(mode=0o755)
    owned = ("active", "bounce", "corrupt", "defer", "deferred", "flush", "hold", "incoming")
    for name in (*owned, "private", "saved", "trace"):
        (spool / name).mkdir(mode=0o700)
        os.chown(spool / name, postfix_uid, -1)
    for name, mode in (("maildrop", 0o1730), ("public", 0o2710)):
        (spool / name).mkdir()
        os.chown(spool / name, postfix_uid, postdrop_gid)
        os.chmod(spool / name, mode)
    (root / "data").mkdir(mode=0o700)
    os.chown(root / "data", postfix_uid, -1)


def write_config_tree(
    layout: Layout,
    ports: Ports,
    *,
    users: Iterable[tuple[str, str]],
    introspection_url: str,
    server_pem: bytes,
    ca_pem: bytes,
) -> None:
    """Create the whole private tree: queue, Maildir root, TLS files and every config file.

    Args:
        layout: Paths under the (existing, empty) root directory.
        ports: The listeners' TCP ports.
        users: ``(address, password)`` pairs, for the passwd-file and Postfix's mailbox map.
        introspection_url: The token-introspection endpoint for the oauth2 passdb.
        server_pem: Server private key and certificate chain (PEM).
        ca_pem: The CA certificate (PEM) clients should trust.
    """
    layout.root.chmod(0o755)  # postfix and dovecot users must traverse it
    for path in (layout.postfix, layout.dovecot, layout.tls, layout.logs):
        path.mkdir(mode=0o755)
    mail_pw = pwd.getpwnam(MAIL_USER)
    layout.mail.mkdir(mode=0o700)
    os.chown(layout.mail, mail_pw.pw_uid, mail_pw.pw_gid)
    _make_postfix_dirs(layout.root)

    (layout.tls / "server.pem").write_bytes(server_pem)
    (layout.tls / "server.pem").chmod(0o600)
    (layout.tls / "ca.pem").write_bytes(ca_pem)

    users = list(users)
    # passwd-file: user:{PLAIN}password:uid:gid:gecos:home:shell:extra. A plaintext scheme lets
    # Dovecot derive CRAM-MD5 and SCRAM-SHA-* secrets from it.
    (layout.dovecot / "users").write_text("".join(f"{u}:{{PLAIN}}{p}::::::\n" for u, p in users))
    (layout.dovecot / "oauth2.conf.ext").write_text(_oauth2_conf(introspection_url))
    (layout.dovecot / "dovecot.conf").write_text(_dovecot_conf(layout, ports))
    # address -> Maildir (trailing slash) relative to virtual_mailbox_base: <domain>/<local>/
    (layout.postfix / "vmailbox").write_text(
        "".join(f"{u} {u.partition('@')[2]}/{u.partition('@')[0]}/\n" for u, _ in users)
    )
    (layout.postfix / "main.cf").write_text(_postfix_main_cf(layout))
    (layout.postfix / "master.cf").write_text(_postfix_master_cf(ports))
    # Postfix waits (up to ~2 s, in 300 ms steps) while a config or texthash file looks "still
    # being edited" (modified within the last second), so backdate ours.
    past = time.time() - 60
    for path in layout.postfix.iterdir():
        os.utime(path, (past, past))
