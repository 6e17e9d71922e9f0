"""Postfix: inbound MX, submission (STARTTLS) and submissions (implicit TLS).

The mail path, end to end:

    client --587/465 (AUTH via Dovecot)--> smtpd [ORIGINATING: OpenDKIM signs]
      --content_filter mxloop--> smtpd :25 as mx.spine.test [OpenDKIM verifies,
      OpenDMARC adds Authentication-Results] --LMTP--> Dovecot (Sieve) --> Maildir

So every submitted message is checked exactly like inbound mail from outside.

Forged Authentication-Results, delivered as Stalwart delivers them: Stalwart neither removes a
sender's Authentication-Results (not even ones naming its own authserv-id) nor believes them; it
prepends its own block above them (reference stalwart.md §2). OpenDKIM removes a sender's header
carrying the lab's authserv-id and a dkim= result, and told not to, OpenDMARC would read it as
OpenDKIM's and say dmarc=pass for a forgery. So a test writes its forgery as
`X-Lab-Forged-Authentication-Results:`, which the milters never read, and the LMTP hop into Dovecot
renames it back (lmtp_header_checks): the message arrives with the receiver's true verdict on top
and the forgery intact below, in the sender's part, exactly as from Stalwart.

Nothing can leave the machine: there is no DNS for SMTP, the default and relay
transports are `error:`, and foreign recipients are rewritten to sink@.
"""

from __future__ import annotations

import os
import pwd
import time

from lab.layout import ALIASES, DOMAIN, FLAKY_USER, GONE_USER, MAIL_HOST, MX_HOST, USERS, Lab
from lab.process import ENV_MARK, Daemon

IMPORT_ENV = f"MAIL_CONFIG MAIL_DEBUG MAIL_LOGTAG TZ LANG=C POSTLOG_SERVICE POSTLOG_HOSTNAME {ENV_MARK}"
# The name a test gives a forged Authentication-Results to deliver it as Stalwart would (above).
FORGED_AR_HEADER = "X-Lab-Forged-Authentication-Results"
NO_OUTBOUND = "error:5.7.1 the lab delivers nothing outside " + DOMAIN


def main_cf(lab: Lab) -> str:
    d = lab.dir
    etc = f"{d}/etc/postfix"
    return f"""# Postfix for the spine-comms lab (port base {lab.base}), by `python -m lab`.
compatibility_level = 3.6
queue_directory = {d}/postfix/spool
data_directory = {d}/postfix/data
meta_directory = /etc/postfix
# The default list, plus the lab mark so that a process scan finds every Postfix process.
import_environment = {IMPORT_ENV}
# No syslog daemon here: postlogd writes the log (the prefix list must allow the path).
maillog_file = {d}/log/postfix.log
maillog_file_prefixes = {d}

myhostname = {MAIL_HOST}
mydomain = {DOMAIN}
myorigin = $mydomain
mydestination =
inet_interfaces = 127.0.0.1
inet_protocols = ipv4
mynetworks = 127.0.0.0/8
smtpd_banner = $myhostname ESMTP spine-comms lab
biff = no
append_dot_mydomain = no
alias_maps =
alias_database =
local_recipient_maps =

# Nothing leaves the machine.
smtp_dns_support_level = disabled
default_transport = {NO_OUTBOUND}
relay_transport = {NO_OUTBOUND}
local_transport = {NO_OUTBOUND}

# spine.test mailboxes live in Dovecot, reached over LMTP.
virtual_mailbox_domains = {DOMAIN}
virtual_mailbox_maps = texthash:{etc}/mailboxes
virtual_transport = lmtp:inet:127.0.0.1:{lab.port("lmtp")}
# A sender's forged Authentication-Results, hidden from the milters, restored at delivery (above).
lmtp_header_checks = regexp:{etc}/forged_authresults.regexp
# Aliases, then every foreign recipient to sink@ (bounces included).
virtual_alias_maps = texthash:{etc}/aliases, regexp:{etc}/sink.regexp
# The default ($virtual_alias_maps) would make {DOMAIN} an alias domain, since the
# catch-all matches it: "User unknown in virtual alias table".
virtual_alias_domains =

# Retry fast: a lab message should never sit in the queue for minutes.
queue_run_delay = 1s
minimal_backoff_time = 1s
maximal_backoff_time = 5s

smtpd_tls_chain_files = {lab.tls}/server.key, {lab.tls}/server.pem
smtpd_tls_security_level = may
smtpd_tls_auth_only = yes
smtpd_tls_received_header = yes
smtp_tls_security_level = may
smtp_tls_CAfile = {lab.ca_file}

smtpd_sasl_type = dovecot
smtpd_sasl_path = {d}/run/dovecot/auth-postfix
smtpd_sasl_authenticated_header = yes
smtpd_sender_login_maps = texthash:{etc}/senders
smtpd_relay_restrictions = permit_sasl_authenticated, reject_unauth_destination

# Mail-out tests (lab/layout.py POLICY_PORT_OFFSET): RCPT to flaky@ on the submission
# services asks a policy service only a test runs; with nobody listening Postfix answers
# 451 4.3.5, and a test's server can say DUNNO (accept) or hold the reply.
smtpd_restriction_classes = flaky_policy
flaky_policy = check_policy_service inet:127.0.0.1:{lab.policy_port}
smtpd_policy_service_timeout = 60s
# A new connection per request: a test's server comes and goes, and a connection kept from
# the last one would fail the next request without asking the new server.
smtpd_policy_service_request_limit = 1

milter_protocol = 6
# A milter that is down must not let unsigned or unchecked mail through.
milter_default_action = tempfail
"""


def master_cf(lab: Lab) -> str:
    p = lab.port
    dkim = f"inet:127.0.0.1:{p('opendkim')}"
    dmarc = f"inet:127.0.0.1:{p('opendmarc')}"
    sender_check = "reject_authenticated_sender_login_mismatch," if lab.knobs.sender_check else ""
    submission_opts = f"""  -o smtpd_sasl_auth_enable=yes
  -o smtpd_delay_reject=no
  -o smtpd_client_restrictions=
  -o smtpd_helo_restrictions=
  -o smtpd_sender_restrictions={sender_check}permit_sasl_authenticated,reject
  -o smtpd_relay_restrictions=permit_sasl_authenticated,reject
  -o smtpd_recipient_restrictions=check_recipient_access,texthash:{lab.etc}/postfix/policy_recipients
  -o milter_macro_daemon_name=ORIGINATING
  -o smtpd_milters={dkim}
  -o content_filter=mxloop:[127.0.0.1]:{p("smtp")}"""
    return f"""# Postfix services for the spine-comms lab (port base {lab.base}). No chroot.
# service type private unpriv chroot wakeup maxproc command
# Inbound, port-25 style. Its own hostname keeps Postfix from seeing the loop
# below as "mail for ... loops back to myself".
127.0.0.1:{p("smtp")} inet n - n - - smtpd
  -o syslog_name=postfix/mx
  -o myhostname={MX_HOST}
  -o smtpd_milters={dkim},{dmarc}
# Submission with STARTTLS required (587 style).
127.0.0.1:{p("submission")} inet n - n - - smtpd
  -o syslog_name=postfix/submission
  -o smtpd_tls_security_level=encrypt
{submission_opts}
# Submission with implicit TLS (465 style, Stalwart 0.16's only submission port).
127.0.0.1:{p("submissions")} inet n - n - - smtpd
  -o syslog_name=postfix/submissions
  -o smtpd_tls_wrappermode=yes
  -o smtpd_tls_security_level=encrypt
{submission_opts}
# Signed submissions go back in through the inbound service to be verified.
mxloop unix - - n - - smtp
  -o syslog_name=postfix/mxloop
pickup unix n - n 60 1 pickup
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
proxywrite unix - - n - 1 proxymap
smtp unix - - n - - smtp
relay unix - - n - - smtp
showq unix n - n - - showq
error unix - - n - - error
retry unix - - n - - error
discard unix - - n - - discard
lmtp unix - - n - - lmtp
anvil unix - - n - 1 anvil
scache unix - - n - 1 scache
postlog unix-dgram n - n - 1 postlogd
"""


def tables(lab: Lab) -> dict[str, str]:
    # gone@ passes Postfix's recipient check, then Dovecot refuses it: a bounce after acceptance.
    mailboxes = "".join(f"{u}@{DOMAIN} OK\n" for u in (*USERS, GONE_USER))
    aliases = "".join(f"{a}@{DOMAIN} {u}@{DOMAIN}\n" for a, u in {**ALIASES, FLAKY_USER: "sink"}.items())
    # Who may use which envelope sender: each user itself, ops also its aliases.
    owners = {f"{u}@{DOMAIN}": f"{u}@{DOMAIN}" for u in USERS}
    owners.update({f"{a}@{DOMAIN}": f"{u}@{DOMAIN}" for a, u in ALIASES.items()})
    senders = "".join(f"{addr} {login}\n" for addr, login in owners.items())
    domain_re = DOMAIN.replace(".", "\\.")
    sink = f"if !/@{domain_re}$/\n/^/ sink@{DOMAIN}\nendif\n"
    return {
        "mailboxes": mailboxes,
        "aliases": aliases,
        "senders": senders,
        "sink.regexp": sink,
        "policy_recipients": f"{FLAKY_USER}@{DOMAIN} flaky_policy\n",
        "forged_authresults.regexp": f"/^{FORGED_AR_HEADER}:(.*)$/ REPLACE Authentication-Results:${{1}}\n",
    }


def configure(lab: Lab) -> None:
    etc = lab.etc / "postfix"
    etc.mkdir(parents=True)
    files = {"main.cf": main_cf(lab), "master.cf": master_cf(lab), **tables(lab)}
    # Postfix will not read a main.cf or table changed in the last ~2 s and waits
    # for it to settle; back-dating the files saves those seconds at every start.
    past = time.time() - 10
    for name, text in files.items():
        path = etc / name
        path.write_text(text)
        os.utime(path, (past, past))
    # post-install (run by `postfix start`) fills the queue directory, but it must exist.
    lab.path("postfix", "spool").mkdir(parents=True)
    lab.path("postfix", "data").mkdir()
    os.chown(lab.path("postfix", "data"), *_postfix_ids())


def _postfix_ids() -> tuple[int, int]:
    entry = pwd.getpwnam("postfix")
    return entry.pw_uid, entry.pw_gid


def daemons(lab: Lab) -> list[Daemon]:
    conf = str(lab.etc / "postfix")
    # `postfix start` creates the queue, checks it, starts the master and returns.
    return [
        Daemon(
            "postfix",
            ["postfix", "-c", conf, "start"],
            env={"MAIL_CONFIG": conf},
            pidfile=lab.path("postfix", "spool", "pid", "master.pid"),
        )
    ]
