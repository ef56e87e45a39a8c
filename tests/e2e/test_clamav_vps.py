"""ClamAV through Amavis on the VPS target (issue 9): mailwright's clamav-daemon.service, the
freshclam timer, Debian's own units off, EICAR blocked and clean mail delivered.

Its own module: test_clamav.py's server holds the host's mail ports for that module's lifetime.
"""

from __future__ import annotations

import pytest

from harness import clients as c
from test_clamav import DB, EICAR, ENV, HDB, USER, message, poll, send, tls_context

pytestmark = pytest.mark.docker


@pytest.fixture(scope="module")
def vps(request, tmp_path_factory, tls):
    from harness import scenario as sc
    from harness.targets import VpsTarget
    from harness.vps import Vps
    request.getfixturevalue("deploy_py")
    root = tmp_path_factory.mktemp("clamav-vps")
    scenario = sc.build(root / "config", tls)
    machine = Vps(image=request.getfixturevalue("vps_image"), workdir=root / "vps")
    t = VpsTarget(scenario=scenario, tls=tls, workdir=root, vps=machine, settings=dict(ENV))
    try:
        machine.start()
        t.start()
        yield t
    finally:
        t.teardown()


def test_vps_eicar_is_blocked_and_clean_mail_delivered(vps):
    # Installed by the deploy: clamav reads Amavis's files, Debian's own freshclam daemon and socket are off.
    groups = vps.exec("id", "-nG", "clamav").stdout.split()
    assert "amavis" in groups, groups
    debian = vps.exec("systemctl", "is-enabled", "clamav-freshclam.service", "clamav-daemon.socket", check=False)
    assert "enabled" not in debian.stdout.split(), debian.stdout
    timer = vps.exec("systemctl", "is-enabled", "mailwright-job-freshclam.timer", check=False).stdout.strip()
    assert timer == "enabled", timer
    # Waiting for signatures under systemd too, then the test signature and clamd's start.
    poll(lambda: "no virus signatures in /var/lib/clamav" in vps.mail_log(), "the no-signature line in mail.log",
         vps.diagnostics, timeout=60)
    vps.exec("sh", "-c", f"cat > {DB}/mwtest-eicar.hdb", input=HDB.read_text())
    poll(lambda: vps.exec("clamdscan", "--ping", "1", check=False).returncode == 0,
         "clamd answering", vps.diagnostics, timeout=60)
    infected, clean = message(c.token("clamav-vps-eicar"), EICAR), message(c.token("clamav-vps-clean"))
    send(infected)
    send(clean)
    c.wait_for_message(USER, vps.scenario.password(USER), clean["Subject"], context=tls_context(vps), timeout=90)
    # Amavis logs through syslog on a VPS: the journal has its line.
    poll(lambda: any("Blocked INFECTED" in x and infected["Message-ID"] in x
                     for x in vps.exec("journalctl", "--no-pager", "-o", "cat", check=False).stdout.splitlines()),
         "Blocked INFECTED for the EICAR message", vps.diagnostics)
    with c.IMAPS(context=tls_context(vps)) as imap:
        imap.login(USER, vps.scenario.password(USER))
        assert c.find_message(imap, "INBOX", infected["Subject"]) is None


