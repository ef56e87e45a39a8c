"""The whole deploy.py, planned and run against pyinfra's @fake connector, per settings combination.

What is asserted is which operations run and which commands they issue: the
init chosen by MAILWRIGHT_INIT, the stages, the package lock, and that a bad
setting stops the deploy before anything touches the target.
"""

from __future__ import annotations

from conftest import exists

from ops import daemons

SYSTEMD = {"MAILWRIGHT_INIT": "systemd", "OVERRIDE_HOSTNAME": "mail.example.test"}
CONTAINER = {"MAILWRIGHT_INIT": "container", "OVERRIDE_HOSTNAME": "mail.example.test"}
INSTALL_OPS = ("Runtime of mailwright's configure stage and init", "Postfix packages", "Dovecot packages",
               "vmail user 'docker'", "Upload the runtime")
CONFIGURE_OPS = ("Config folder", "Effective settings (/etc/dms-settings)", "Configuration")
SECRETS = ("/etc/ssl/private/ssl-cert-snakeoil.key", "/etc/ssl/certs/ssl-cert-snakeoil.pem",
           "/etc/dovecot/private/dovecot.key", "/etc/dovecot/private/dovecot.pem")
APT_INSTALL = "apt-get -y"


def ok(run):
    assert run.returncode == 0, run.output[-3000:]
    return run


def failed(run):
    assert run.returncode != 0, run.output[-3000:]
    return run


# --- init: systemd vs container ----------------------------------------------------------------------------

def test_systemd_runs_units_and_the_watcher(deploy):
    r = ok(deploy(SYSTEMD))
    for name in ("Postfix running", "Dovecot running", "Config watcher running"):
        assert r.op(name), name
    assert r.ran("systemctl start postfix.service") and r.ran("systemctl enable postfix.service")
    assert r.ran("systemctl start dovecot.service")
    assert r.ran("systemctl start mailwright-watch.service")
    # Never our own init on a systemd host.
    assert not r.op("mailwright init running")
    assert not r.ran("mailwright.init --adopt")


def test_container_starts_our_init_and_no_systemd_unit(deploy):
    r = ok(deploy(CONTAINER))
    assert r.op("mailwright init running")
    assert r.ran("setsid python3 -m mailwright.init --adopt")
    assert not any(r.op(n) for n in ("Postfix running", "Dovecot running", "Config watcher running"))
    assert not r.ran("systemctl")


def test_container_init_already_running_is_left_alone(deploy):
    r = ok(deploy(CONTAINER, responses={"[m]ailwright/supervise.sh": "yes"}))
    assert r.op("mailwright init running")
    assert not r.ran("mailwright.init --adopt")


def test_smtp_only_systemd_stops_dovecot(deploy):
    # Dovecot reported running and enabled: SMTP_ONLY must switch it off, not merely leave it.
    responses = {
        "--property SubState dovecot.service": ["Id=dovecot.service", "SubState=running"],
        "--property UnitFileState dovecot.service": ["Id=dovecot.service", "UnitFileState=enabled"],
    }
    r = ok(deploy({**SYSTEMD, "SMTP_ONLY": True}, responses=responses))
    assert r.ran("systemctl stop dovecot.service")
    assert r.ran("systemctl disable dovecot.service")
    assert r.ran("systemctl start postfix.service")


# --- stages ---------------------------------------------------------------------------------------------------

def test_all_stages_by_default_in_order(deploy):
    r = ok(deploy(SYSTEMD))
    names = [o.split(" | ", 1)[-1] for o in r.operations]
    for name in INSTALL_OPS + CONFIGURE_OPS:
        assert name in names, name
    # Packages before the files that configure them; settings before what is computed from them.
    assert names.index("Postfix packages") < names.index("Configuration")
    assert names.index("Dovecot packages") < names.index("Configuration")
    assert names.index("Effective settings (/etc/dms-settings)") < names.index("Configuration")
    assert names.index("Configuration") < names.index("Postfix running") < names.index("Config watcher running")
    # A VPS keeps its snakeoil certificate: secrets are only stripped for an image.
    assert not any(r.op(f"No {p}") for p in SECRETS)


def test_install_stage_alone_runs_no_configure_op_and_strips_secrets(deploy):
    # As Debian leaves them: the snakeoil pair, and dovecot-core's links to it.
    responses = {**exists(SECRETS[0]), **exists(SECRETS[1]),
                 **exists(SECRETS[2], link_to=SECRETS[0]), **exists(SECRETS[3], link_to=SECRETS[1])}
    r = ok(deploy({"mailwright_stage": "install"}, responses=responses))
    for name in INSTALL_OPS:
        assert r.op(name), name
    for name in CONFIGURE_OPS + ("Postfix running", "mailwright init running", "Config watcher running"):
        assert not r.op(name), name
    for path in SECRETS:
        assert r.op(f"No {path}")
        assert r.ran(f"rm -f {path}"), path
    assert "/etc/dms-settings" not in r.uploads


def test_vps_installs_only_enabled_daemons_packages(deploy):
    # The image (install stage, no settings) has every daemon; a VPS only what its settings enable.
    r = ok(deploy({**SYSTEMD, "SMTP_ONLY": True}))
    assert r.op("Postfix packages") and not r.op("Dovecot packages")
    assert r.op("Dovecot stopped") and not r.op("Dovecot running")
    assert ok(deploy(SYSTEMD)).op("Dovecot packages")


def test_systemd_schedules_the_jobs_as_timers(deploy):
    r = ok(deploy(SYSTEMD))
    assert r.op("Job maillog-rotate scheduled")
    assert r.ran("systemctl start mailwright-job-maillog-rotate.timer")
    assert not ok(deploy(CONTAINER)).op("Job maillog-rotate scheduled")       # the supervisor runs it there


def test_install_stage_needs_no_settings(deploy):
    # The image build knows no settings: a value that would be refused at start is irrelevant here.
    r = ok(deploy({"mailwright_stage": "install", "SSL_TYPE": "bogus"}))
    assert r.op("Postfix packages")


def test_configure_stage_alone_installs_nothing(deploy):
    r = ok(deploy({**CONTAINER, "mailwright_stage": "configure"}))
    for name in CONFIGURE_OPS:
        assert r.op(name), name
    assert not r.ran(APT_INSTALL) and not r.ran("apt-get update")
    assert not r.op("Upload the runtime")
    assert not any(r.op(f"No {p}") for p in SECRETS)


def test_unknown_stage_is_refused(deploy):
    r = failed(deploy({**SYSTEMD, "mailwright_stage": "everything"}))
    assert "mailwright_stage='everything'" in r.output and "install, configure, all" in r.output
    assert not r.ran(APT_INSTALL)


# --- package lock ------------------------------------------------------------------------------------------------

LOCKED = {"python3": "3.11.2-1+b1", "python3-jinja2": "3.1.2-1", "iproute2": "6.1.0-3",
          "ca-certificates": "20230311", "openssl": "3.0.15-1~deb12u1", "postfix": "3.7.11-0+deb12u1",
          "postfix-pcre": "3.7.11-0+deb12u1", "libsasl2-modules": "2.1.28+dfsg-10+deb12u1", "dovecot-core": "1:2.3.19.1+dfsg1-2.1+deb12u1",
          "dovecot-imapd": "1:2.3.19.1+dfsg1-2.1+deb12u1", "dovecot-pop3d": "1:2.3.19.1+dfsg1-2.1+deb12u1",
          "dovecot-lmtpd": "1:2.3.19.1+dfsg1-2.1+deb12u1", "dovecot-managesieved": "1:2.3.19.1+dfsg1-2.1+deb12u1",
          "dovecot-sieve": "1:2.3.19.1+dfsg1-2.1+deb12u1", "libc6": "2.36-9+deb12u9"}
# Every daemon's packages are locked too: the image build installs them all, whichever
# daemons exist (a new daemon's packages must not break these tests).
LOCKED.update({p: "1.0-test" for d in daemons.all_daemons() for p in d.packages if p not in LOCKED})


def write_lock(tmp_path, entries):
    lock = tmp_path / "packages.lock"
    lock.write_text("# name=version\n" + "".join(f"{n}={v}\n" for n, v in entries.items()))
    return str(lock)


def apt_install(run, op_name):
    [command] = [c for c in run.commands_of(op_name) if APT_INSTALL in c]
    return command


def test_without_lock_packages_are_unpinned(deploy):
    r = ok(deploy({"mailwright_stage": "install"}))
    postfix = apt_install(r, "Postfix packages")
    assert postfix.split()[-5:] == ["postfix", "postfix-pcre", "postfix-ldap", "postfix-lmdb", "libsasl2-modules"]
    assert "=" not in postfix.split("install", 1)[1].replace("--no-install-recommends", "")


def test_with_lock_every_package_is_pinned(deploy, tmp_path):
    r = ok(deploy({"mailwright_stage": "install", "mailwright_package_lock": write_lock(tmp_path, LOCKED)}))
    postfix = apt_install(r, "Postfix packages")
    assert "postfix=3.7.11-0+deb12u1" in postfix.split()
    assert "libc6=2.36-9+deb12u9" in postfix.split()           # dependencies pinned too
    dovecot = apt_install(r, "Dovecot packages")
    assert "dovecot-core=1:2.3.19.1+dfsg1-2.1+deb12u1" in dovecot.split()
    assert not any(w in ("postfix", "dovecot-core") for w in postfix.split() + dovecot.split())   # no unpinned name


def test_lock_missing_a_package_fails_naming_it(deploy, tmp_path):
    partial = {k: v for k, v in LOCKED.items() if k != "postfix-pcre"}
    r = failed(deploy({"mailwright_stage": "install", "mailwright_package_lock": write_lock(tmp_path, partial)}))
    assert "package lock has no entry for postfix-pcre" in r.output
    assert not r.ran(APT_INSTALL)          # refused while planning, before any package is touched


# --- bad settings stop the deploy before it touches the target ---------------------------------------------------

def test_bad_setting_fails_naming_the_variable(deploy):
    r = failed(deploy({**SYSTEMD, "SSL_TYPE": "bogus"}))
    assert "SSL_TYPE='bogus'" in r.output and "'letsencrypt'" in r.output and "'manual'" in r.output
    assert not r.ran(APT_INSTALL) and not r.ran("apt-get update")


def test_missing_mailwright_init_fails_naming_it(deploy):
    r = failed(deploy({"OVERRIDE_HOSTNAME": "mail.example.test"}))
    assert "MAILWRIGHT_INIT" in r.output and "systemd" in r.output and "container" in r.output
    assert not r.ran(APT_INSTALL)


def test_operator_environment_is_a_settings_source(deploy):
    r = failed(deploy(SYSTEMD, environ={"ENABLE_POP3": "maybe"}))
    assert "ENABLE_POP3='maybe'" in r.output


def test_environment_beats_host_data(deploy):
    # Host data says bogus, the environment corrects it: the environment has the last word.
    ok(deploy({**SYSTEMD, "TLS_LEVEL": "ancient"}, environ={"TLS_LEVEL": "intermediate"}))


def test_mailserver_env_file_is_read(deploy, tmp_path):
    env = tmp_path / "mailserver.env"
    env.write_text("# docker-mailserver format\nDMS_CONFIG_POLL=0\n")
    r = failed(deploy({**SYSTEMD, "mailserver_env": str(env)}))
    assert "DMS_CONFIG_POLL='0'" in r.output and "at least 1" in r.output


def test_host_data_beats_mailserver_env(deploy, tmp_path):
    env = tmp_path / "mailserver.env"
    env.write_text("DMS_CONFIG_POLL=0\n")
    ok(deploy({**SYSTEMD, "mailserver_env": str(env), "DMS_CONFIG_POLL": 5}))


def test_hostname_comes_from_the_target_without_override(deploy):
    r = failed(deploy({"MAILWRIGHT_INIT": "systemd"}, responses={"hostname -f": "localhost"}))
    assert r.ran("hostname -f")
    assert "OVERRIDE_HOSTNAME='localhost'" in r.output and "needs a dot" in r.output
    ok(deploy({"MAILWRIGHT_INIT": "systemd"}, responses={"hostname -f": "mx.example.org"}))


# --- configure: only when something drifted -----------------------------------------------------------------------

def configure_checks(run):
    return [c for c in run.commands if "mailwright.configure --check" in c]


def test_no_drift_no_configure_command(deploy):
    # A second run on a configured host: the check reports nothing, so nothing is rewritten or reloaded.
    r = ok(deploy(SYSTEMD))
    assert r.ran("python3 -m mailwright.configure --check")
    assert not r.ran("mailwright.configure --reload")


def test_one_remote_plan_for_the_whole_configuration(deploy):
    # One check of the whole plan on the target (not one per daemon), and no `--only`.
    r = ok(deploy(SYSTEMD))
    assert len(configure_checks(r)) == 1 and "--only" not in configure_checks(r)[0]


def test_drift_runs_configure_once_for_everything(deploy):
    r = ok(deploy(SYSTEMD, responses={"configure --check": "changed /etc/postfix/main.cf"}))
    assert r.commands_of("Configuration")[-1].endswith("python3 -m mailwright.configure --reload")
    assert not r.ran("--reload --only")


def test_first_deploy_configures_everything(deploy):
    # Before the runtime exists the check answers "unknown": the whole configuration is applied.
    r = ok(deploy(SYSTEMD, responses={"configure --check": "unknown"}))
    assert r.commands_of("Configuration")[-1].endswith("python3 -m mailwright.configure --reload")


# --- config folder seeding ------------------------------------------------------------------------------------------

def test_config_source_seeds_only_missing_files(deploy, tmp_path):
    source = tmp_path / "config"
    source.mkdir()
    (source / "postfix-accounts.cf").write_text("a@example.test|{SHA512-CRYPT}$6$s$h\n")
    (source / "postfix-virtual.cf").write_text("b@example.test a@example.test\n")
    target = "/etc/mailwright/config"   # systemd default: /tmp does not last on a VPS
    r = ok(deploy({**SYSTEMD, "mailwright_config_source": str(source)},
                  responses=exists(f"{target}/postfix-accounts.cf")))
    # The target's copy is the source of truth once it exists (`setup email add` writes there).
    assert f"{target}/postfix-accounts.cf" not in r.uploads
    assert f"{target}/postfix-virtual.cf" in r.uploads


def test_settings_file_is_private(deploy):
    r = ok(deploy(SYSTEMD))
    assert "/etc/dms-settings" in r.uploads
    assert "chmod 600 /etc/dms-settings" in r.commands_of("Effective settings (/etc/dms-settings)")


def test_vps_config_folder_is_roots_alone_and_seeded_secrets_are_private(deploy, tmp_path):
    source = tmp_path / "config"
    (source / "opendkim" / "keys" / "example.test").mkdir(parents=True)
    secrets = ["postfix-accounts.cf", "dovecot-masters.cf", "postfix-sasl-password.cf",
               "opendkim/keys/example.test/mail.private"]
    for name in secrets:
        (source / name).write_text("secret\n")
        (source / name).chmod(0o644)                       # the operator's umask, not a choice
    (source / "postfix-virtual.cf").write_text("b@example.test a@example.test\n")
    (source / "postfix-virtual.cf").chmod(0o666)
    target = "/etc/mailwright/config"
    r = ok(deploy({**SYSTEMD, "mailwright_config_source": str(source)}))
    assert f"chmod 700 {target}" in r.commands_of("Config folder")
    for name in secrets:
        assert f"{target}/{name}" in r.uploads
        assert f"chmod 600 {target}/{name}" in r.commands_of(f"Seed {name}"), name
    assert f"chmod 644 {target}/postfix-virtual.cf" in r.commands_of("Seed postfix-virtual.cf")


def test_container_config_folder_keeps_its_mode_but_secrets_are_private(deploy, tmp_path):
    source = tmp_path / "config"
    source.mkdir()
    (source / "postfix-accounts.cf").write_text("a@example.test|{SHA512-CRYPT}$6$s$h\n")
    (source / "postfix-accounts.cf").chmod(0o640)
    r = ok(deploy({**CONTAINER, "mailwright_config_source": str(source)}))
    assert "chmod 755 /tmp/docker-mailserver" in r.commands_of("Config folder")   # maybe the operator's own folder
    assert "chmod 600 /tmp/docker-mailserver/postfix-accounts.cf" in r.commands_of("Seed postfix-accounts.cf")


def test_secrets_already_on_the_target_are_made_private(deploy):
    # An earlier deploy seeded them with the operator's mode: the next one tightens them (and only them).
    loose = "/etc/mailwright/config/postfix-accounts.cf\n/etc/mailwright/config/opendkim/keys/example.test/mail.private"
    r = ok(deploy(SYSTEMD, responses={"-perm /077 -print": loose, **exists("/etc/mailwright/config/postfix-accounts.cf"),
                                      **exists("/etc/mailwright/config/opendkim/keys/example.test/mail.private")}))
    assert "chmod 600 /etc/mailwright/config/postfix-accounts.cf" in r.commands_of("Make postfix-accounts.cf private")
    assert r.op("Make opendkim/keys/example.test/mail.private private")
    assert not ok(deploy(SYSTEMD)).ran("chmod 600 /etc/mailwright/config/")       # nothing loose: nothing done
