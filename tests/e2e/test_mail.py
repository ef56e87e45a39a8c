"""The end-to-end subset of issue 2, run against every target (image, VPS over SSH, docker connector).

Observable behaviour only: real clients (smtplib, imaplib, poplib) on the
host's loopback, TLS verified against the session's trustme CA. Tests run in
file order for one target; the ones that restart or recreate the server come
last, and the last one reconfigures it (POP3 on).
"""

from __future__ import annotations

import base64
import imaplib
import poplib
import re
import smtplib
import ssl

import pytest

from harness import clients as c
from harness import scenario as sc
from harness import tlsutil

pytestmark = pytest.mark.docker

# Messages delivered early and looked for again after a recreate: {(target kind, user): token}.
SURVIVORS: dict[tuple[str, str], str] = {}


def deliver_and_find(target, rcpt: str, owner: str, *, subject_prefix: str = "deliver", mailbox: str = "INBOX",
                     port: int = 25, login=None) -> str:
    ctx = target.tls.client_context()
    tok = c.token(subject_prefix)
    try:
        refused = c.send(sc.SENDER, rcpt, f"{tok} to {rcpt}", port=port, context=ctx, login=login)
    except smtplib.SMTPException as e:
        raise AssertionError(f"sending to {rcpt} failed: {e!r}\n{target.diagnostics()}") from None
    assert refused == {}, refused
    try:
        c.wait_for_message(owner, target.scenario.password(owner), tok, context=ctx, mailbox=mailbox)
    except AssertionError as e:
        raise AssertionError(f"{e}\n{target.diagnostics()}") from None
    return tok


# --- start-up and configuration ------------------------------------------------------
def test_malformed_account_line_reported_with_file_and_line(target):
    n = target.scenario.malformed_line
    text = target.report_text()
    assert re.search(rf"postfix-accounts\.cf:{n}\b", text), (
        f"the malformed line {n} of postfix-accounts.cf is not reported as `postfix-accounts.cf:{n}`\n"
        + target.diagnostics())


def test_second_deploy_run_changes_nothing(target):
    if target.kind == "image":
        pytest.skip("the image is not deployed with pyinfra from outside")
    run = target.deploy(check=False)
    assert run.ok, f"second pyinfra run failed\n{run}"
    res = run.results()
    assert res.total is not None, f"no results table in pyinfra's output\n{run}"
    assert not res.errors, f"operations with errors: {res.errors}\n{run}"
    assert not res.changed, f"second run changed: {res.changed}\n{run}"
    target.wait_serving()


# --- delivery ----------------------------------------------------------------------
def test_delivery_to_account(target):
    SURVIVORS[(target.kind, sc.USER1)] = deliver_and_find(target, sc.USER1, sc.USER1)


def test_delivery_to_plus_tag_address(target):
    deliver_and_find(target, "user1+tag@example.test", sc.USER1)


def test_delivery_to_alias(target):
    deliver_and_find(target, sc.ALIAS, sc.USER2)


def test_delivery_to_catch_all(target):
    deliver_and_find(target, sc.CATCHALL, sc.USER1)


def test_delivery_through_regexp_alias(target):
    deliver_and_find(target, sc.REGEXP_RCPT, sc.USER2)


def test_unknown_recipient_refused_at_rcpt(target):
    with c.SMTP(25) as s:
        s.ehlo()
        code, _ = s.mail(sc.SENDER)
        assert code == 250
        code, msg = s.rcpt(sc.UNKNOWN)
    assert code == 550, f"RCPT TO:<{sc.UNKNOWN}> answered {code} {msg!r}"


def test_port_25_offers_verified_starttls_and_no_auth(target):
    ctx = target.tls.client_context()
    with c.SMTP(25) as s:
        s.ehlo()
        assert s.has_extn("starttls"), s.esmtp_features
        assert not s.has_extn("auth"), f"port 25 advertises AUTH before TLS: {s.esmtp_features}"
        s.starttls(ctx)  # raises unless the chain verifies against the test CA for mail.example.test
        s.ehlo()
        assert not s.has_extn("auth"), f"port 25 advertises AUTH after TLS: {s.esmtp_features}"


def test_relay_to_foreign_domain_refused_without_auth(target):
    """Even from 127.0.0.1: PERMIT_DOCKER's default trusts nothing."""
    for source in (None, c.ALT_SOURCE):
        with c.SMTP(25, source=source) as s:
            s.ehlo()
            assert s.mail(sc.SENDER)[0] == 250
            code, msg = s.rcpt(sc.FOREIGN)
            s.rset()
        assert code in (454, 554), f"relay to {sc.FOREIGN} from {source or '127.0.0.1'}: {code} {msg!r}"
        assert b"relay access denied" in msg.lower(), msg


# --- submission ------------------------------------------------------------------------
def test_submission_587_refuses_auth_before_starttls_and_accepts_after(target):
    ctx = target.tls.client_context()
    user, pw = sc.USER1, target.scenario.password(sc.USER1)
    with c.SMTP(587) as s:
        s.ehlo()
        assert not s.has_extn("auth"), f"587 advertises AUTH before STARTTLS: {s.esmtp_features}"
        blob = base64.b64encode(f"\0{user}\0{pw}".encode()).decode()
        code, msg = s.docmd("AUTH", f"PLAIN {blob}")
        assert code >= 500, f"AUTH before STARTTLS answered {code} {msg!r}"
        # and no mail without TLS either
        code, msg = s.docmd("MAIL", f"FROM:<{user}>")
        assert code >= 500, f"MAIL before STARTTLS answered {code} {msg!r}"
    tok = c.token("submission")
    with c.SMTP(587) as s:
        s.ehlo()
        s.starttls(ctx)
        s.ehlo()
        assert s.has_extn("auth"), f"587 does not advertise AUTH after STARTTLS: {s.esmtp_features}"
        s.login(user, pw)
        assert s.send_message(c.make_message(user, sc.USER2, tok), from_addr=user, to_addrs=[sc.USER2]) == {}
    c.wait_for_message(sc.USER2, target.scenario.password(sc.USER2), tok, context=ctx)


def test_submission_587_refuses_unauthenticated_mail(target):
    ctx = target.tls.client_context()
    with c.SMTP(587) as s:
        s.ehlo()
        s.starttls(ctx)
        s.ehlo()
        s.mail(sc.SENDER)
        code, msg = s.rcpt(sc.USER2)
    assert code >= 500, f"587 accepted a recipient without AUTH: {code} {msg!r}"


def test_submissions_465_with_auth(target):
    ctx = target.tls.client_context()
    user, pw = sc.USER2, target.scenario.password(sc.USER2)
    tok = c.token("submissions")
    with c.SMTPS(465, context=ctx) as s:
        s.ehlo()
        assert s.has_extn("auth"), s.esmtp_features
        s.login(user, pw)
        assert s.send_message(c.make_message(user, sc.USER1, tok), from_addr=user, to_addrs=[sc.USER1]) == {}
        # authenticated users may relay (checked at RCPT only: nothing leaves this machine)
        s.mail(user)
        code, msg = s.rcpt(sc.FOREIGN)
        s.rset()
        assert code == 250, f"authenticated relay refused: {code} {msg!r}"
    c.wait_for_message(sc.USER1, target.scenario.password(sc.USER1), tok, context=ctx)


@pytest.mark.parametrize("port", [465, 587])
def test_wrong_password_refused_535(target, port):
    ctx = target.tls.client_context()
    if port == 465:
        s = c.SMTPS(465, context=ctx)
    else:
        s = c.SMTP(587)
    with s:
        s.ehlo()
        if port == 587:
            s.starttls(ctx)
            s.ehlo()
        with pytest.raises(smtplib.SMTPAuthenticationError) as e:
            s.login(sc.USER1, "not-the-password")
    assert e.value.smtp_code == 535, e.value


def test_malformed_account_cannot_log_in(target):
    ctx = target.tls.client_context()
    with c.IMAPS(context=ctx) as imap, pytest.raises(imaplib.IMAP4.error):
        imap.login("broken-no-hash@example.test", "")


# --- IMAP / POP3 -----------------------------------------------------------------------
def test_imap_logindisabled_before_starttls(target):
    ctx = target.tls.client_context()
    with c.IMAP(143, source=c.ALT_SOURCE) as imap:
        assert "LOGINDISABLED" in imap.capabilities, imap.capabilities
        with pytest.raises(imaplib.IMAP4.error):
            imap.login(sc.USER1, target.scenario.password(sc.USER1))
    with c.IMAP(143, source=c.ALT_SOURCE) as imap:
        imap.starttls(ctx)
        assert "LOGINDISABLED" not in imap.capabilities, imap.capabilities
        typ, _ = imap.login(sc.USER1, target.scenario.password(sc.USER1))
        assert typ == "OK"


def test_imaps_993_login(target):
    ctx = target.tls.client_context()
    with c.IMAPS(context=ctx) as imap:
        assert imap.login(sc.USER2, target.scenario.password(sc.USER2))[0] == "OK"
        typ, boxes = imap.list()
        names = b" ".join(boxes).decode()
        for special in ("Drafts", "Junk", "Sent", "Trash"):
            assert special in names, f"special-use folder {special} missing: {names}"


@pytest.mark.parametrize("port", [110, 995])
def test_pop3_refused_when_not_enabled(target, port):
    if target.settings.get("ENABLE_POP3") == "1":
        pytest.skip("POP3 was enabled by a previous test")
    ctx = target.tls.client_context()
    with pytest.raises((OSError, poplib.error_proto, ssl.SSLError)):
        client = c.POP3S(port, context=ctx, timeout=5) if port == 995 else c.POP3(port, timeout=5)
        try:
            client.user(sc.USER1)
            client.pass_(target.scenario.password(sc.USER1))
        finally:
            client.close()


# --- quota and sieve -----------------------------------------------------------------
def test_quota_full_gives_552(target):
    """dovecot-quotas.cf `quota@example.test:1M`, then a ~1.5 MB message."""
    ctx = target.tls.client_context()
    msg = c.make_message(sc.SENDER, sc.QUOTA_USER, c.token("quota"), size=1_500_000)
    with c.SMTP(25) as s:
        s.ehlo()
        s.starttls(ctx)
        s.ehlo()
        with pytest.raises((smtplib.SMTPRecipientsRefused, smtplib.SMTPDataError)) as e:
            s.send_message(msg, from_addr=sc.SENDER, to_addrs=[sc.QUOTA_USER])
    err = e.value
    if isinstance(err, smtplib.SMTPRecipientsRefused):
        code, text = err.recipients[sc.QUOTA_USER]
    else:
        code, text = err.smtp_code, err.smtp_error
    assert code == 552, f"over-quota message answered {code} {text!r}"
    # and the account still receives a small message
    deliver_and_find(target, sc.QUOTA_USER, sc.QUOTA_USER, subject_prefix="quota-small")


def test_per_user_sieve_files_into_folder(target):
    tok = deliver_and_find(target, sc.SIEVE_USER, sc.SIEVE_USER, subject_prefix="sieve-test", mailbox="Junk")
    ctx = target.tls.client_context()
    with c.IMAPS(context=ctx) as imap:
        imap.login(sc.SIEVE_USER, target.scenario.password(sc.SIEVE_USER))
        assert c.find_message(imap, "INBOX", tok) is None, "sieve-filed message is also in INBOX"
    # a message without the keyword stays in INBOX
    deliver_and_find(target, sc.SIEVE_USER, sc.SIEVE_USER, subject_prefix="plain")


# --- TLS ---------------------------------------------------------------------------------
@pytest.mark.parametrize("port,starttls", [(25, "smtp"), (465, None), (587, "smtp"), (143, "imap"), (993, None)])
def test_serves_the_configured_certificate(target, port, starttls):
    """SSL_TYPE=manual: every TLS port presents the certificate from SSL_CERT_PATH."""
    cert = tlsutil.served_certificate(port, target.tls.client_context(), starttls)
    assert cert.serial_number == target.scenario.cert_serial


# --- TLS certificate replaced on disk -------------------------------------------------
def test_certificate_replaced_on_disk_is_served_without_restart(target):
    ctx = target.tls.client_context()
    old = tlsutil.served_certificate(993, ctx).serial_number
    assert old == target.scenario.cert_serial, "not serving the configured certificate"
    leaf = target.tls.issue()
    new = tlsutil.TestTLS.serial(leaf)
    assert new != old
    cert_path = f"{target.config_dir}/ssl/cert.pem"
    key_path = f"{target.config_dir}/ssl/key.pem"
    target.replace_file(key_path, tlsutil.TestTLS.key_pem(leaf), mode="0600")
    target.replace_file(cert_path, tlsutil.TestTLS.chain_pem(leaf))
    try:
        tlsutil.wait_for_serial(993, ctx, new, timeout=12)
        tlsutil.wait_for_serial(465, ctx, new, timeout=12)
        tlsutil.wait_for_serial(587, ctx, new, starttls="smtp", timeout=12)
        tlsutil.wait_for_serial(143, ctx, new, starttls="imap", timeout=12)
    except AssertionError as e:
        raise AssertionError(f"{e}\n{target.diagnostics()}") from None


# --- restart / recreate / reconfigure -------------------------------------------------
def _config_snapshot(target) -> dict[str, str]:
    snap = {}
    for cmd in (["postconf", "-n"], ["doveconf", "-n"], ["postconf", "-M"]):
        r = target.exec(*cmd, check=False)
        assert r.returncode == 0, f"{' '.join(cmd)} failed: {r.stderr}"
        snap[" ".join(cmd)] = r.stdout
    main_cf = target.exec("cat", "/etc/postfix/main.cf").stdout
    keys = [ln.split("=", 1)[0].strip() for ln in main_cf.splitlines()
            if ln.strip() and not ln.lstrip().startswith("#") and not ln[0].isspace() and "=" in ln]
    dups = sorted({k for k in keys if keys.count(k) > 1})
    assert not dups, f"/etc/postfix/main.cf defines these parameters more than once: {dups}"
    return snap


def _assert_same(before: dict[str, str], after: dict[str, str], what: str) -> None:
    import difflib
    for key in before:
        if before[key] != after[key]:
            diff = "\n".join(difflib.unified_diff(before[key].splitlines(), after[key].splitlines(),
                                                  "before", "after", lineterm=""))
            raise AssertionError(f"`{key}` differs after {what}:\n{diff}")


def test_restart_changes_nothing(target):
    before = _config_snapshot(target)
    target.restart()
    after = _config_snapshot(target)
    _assert_same(before, after, "a restart")
    deliver_and_find(target, sc.USER2, sc.USER2, subject_prefix="after-restart")


def test_message_survives_recreate(target):
    ctx = target.tls.client_context()
    if (target.kind, sc.USER1) not in SURVIVORS:
        SURVIVORS[(target.kind, sc.USER1)] = deliver_and_find(target, sc.USER1, sc.USER1, subject_prefix="survivor")
    before = _config_snapshot(target)
    target.recreate()
    after = _config_snapshot(target)
    c.wait_for_message(sc.USER1, target.scenario.password(sc.USER1), SURVIVORS[(target.kind, sc.USER1)], context=ctx, timeout=20)
    _assert_same(before, after, "recreating")
    deliver_and_find(target, sc.USER1, sc.USER1, subject_prefix="after-recreate")


def test_pop3_works_when_enabled(target):
    """Last: switches ENABLE_POP3=1 (recreate for the image, a deploy for the others)."""
    ctx = target.tls.client_context()
    tok = SURVIVORS.get((target.kind, sc.USER1)) or deliver_and_find(target, sc.USER1, sc.USER1)
    target.reconfigure(ENABLE_POP3="1")
    c.wait_for_ports([110, 995], timeout=30)
    user, pw = sc.USER1, target.scenario.password(sc.USER1)
    p = c.POP3S(995, context=ctx)
    try:
        p.user(user)
        p.pass_(pw)
        count, _ = p.stat()
        assert count >= 1
        found = any(tok.encode() in b"\n".join(p.top(i, 0)[1]) for i in range(1, count + 1))
        assert found, f"{tok} not found over POP3"
        p.quit()
    finally:
        p.close()
    # 110 without STLS from another address: no plaintext login
    p = c.POP3(110, source=c.ALT_SOURCE)
    try:
        with pytest.raises(poplib.error_proto):
            p.user(user)
            p.pass_(pw)
    finally:
        p.close()
    p = c.POP3(110, source=c.ALT_SOURCE)
    try:
        p.stls(ctx)
        p.user(user)
        assert p.pass_(pw).startswith(b"+OK")
        p.quit()
    finally:
        p.close()
