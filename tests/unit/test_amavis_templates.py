"""Amavis and SpamAssassin (ops/amavis): descriptor, files, Postfix hook, jobs, settings; Dovecot's spam scripts.

Pure: nothing here starts Amavis (tests/e2e/test_filters.py does). The rendered files are compared
with golden copies (tests/unit/golden/amavis/; MAILWRIGHT_REGOLD=1 rewrites them after a deliberate change).
"""

from __future__ import annotations

import logging
import os
import subprocess
import time
from pathlib import Path

import pytest

from ops import configdir, daemons, plan, settings as S
from ops.amavis import config, jobs
from ops.amavis.daemon import DAEMON
from ops.daemon import PostfixHooks
from ops.dovecot import config as dovecot_config

FQDN = "mail.example.test"
GOLDEN = Path(__file__).parent / "golden" / "amavis"
ACCOUNTS = "user@example.test|{SHA512-CRYPT}$6$salt1$hash1\n"
ALIASES = "info@other.test user@example.test\n"


def load(**env) -> S.Settings:
    return S.load(environ={"MAILWRIGHT_INIT": "container", **{k: str(v) for k, v in env.items()}}, fqdn=FQDN)


def folder_with(tmp_path, config_files: dict[str, str] | None = None) -> Path:
    folder = tmp_path / "config"
    folder.mkdir(parents=True, exist_ok=True)
    for name, text in {"postfix-accounts.cf": ACCOUNTS, "postfix-virtual.cf": ALIASES,
                       **(config_files or {})}.items():
        (folder / name).write_text(text)
    return folder


def render(tmp_path, config_files: dict[str, str] | None = None, **env) -> dict[str, config.ConfigFile]:
    folder = folder_with(tmp_path, config_files)
    return {f.path: f for f in DAEMON.files(load(**env), configdir.read(folder), None)}


def all_files(tmp_path, config_files=None, **env) -> dict[str, object]:
    folder = folder_with(tmp_path, config_files)
    s = S.load(host_data={"MAILWRIGHT_INIT": "container", "MAILWRIGHT_CONFIG_DIR": str(folder)},
               environ={k: str(v) for k, v in env.items()}, fqdn=FQDN)
    return {f.path: f for f in plan.files(s, configdir.read(folder))}


def golden(name: str, text: str) -> None:
    path = GOLDEN / name
    if os.environ.get("MAILWRIGHT_REGOLD"):
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    assert text == path.read_text(), f"{name} differs from its golden copy"


# --- the descriptor -----------------------------------------------------------------------------------

def test_amavis_is_found_by_its_folder_and_starts_before_postfix():
    assert daemons.by_name("amavis") is DAEMON
    names = [d.name for d in daemons.all_daemons()]
    assert names.index("amavis") < names.index("postfix")


def test_descriptor_fields():
    assert DAEMON.unit == "amavis.service"
    assert DAEMON.pidfile == "/run/amavis/amavisd.pid"
    assert (DAEMON.reload.kind, DAEMON.reload.signal) == ("signal", "HUP")
    assert DAEMON.state == ("/var/lib/amavis", "/var/lib/spamassassin")
    assert DAEMON.reads == ("amavis.cf", "spamassassin-rules.cf")
    assert DAEMON.secrets == ("/var/lib/spamassassin/sa-update-keys/**",)
    assert "systemd" not in DAEMON.packages      # the small sysusers provider keeps systemd out of the image
    assert DAEMON.foreground[-1].endswith("exec /usr/sbin/amavisd foreground 2>/run/amavis/log.fifo")


def test_enabled_by_default_like_docker_mailserver_and_ports_follow():
    on, off = load(), load(ENABLE_AMAVIS=0)
    assert DAEMON.enabled(on) and not DAEMON.enabled(off)
    assert DAEMON.ports(on) == (10024,) and DAEMON.ports(off) == ()


def test_jobs_virusmails_always_sa_update_with_spamassassin():
    assert [j.name for _, j in daemons.jobs(load()) if _.name == "amavis"] == ["amavis-virusmails"]
    assert [j.name for _, j in daemons.jobs(load(ENABLE_SPAMASSASSIN=1)) if _.name == "amavis"] == \
        ["amavis-virusmails", "sa-update"]
    assert [j.name for _, j in daemons.jobs(load(ENABLE_AMAVIS=0)) if _.name == "amavis"] == []


# --- Postfix ----------------------------------------------------------------------------------------------

def test_postfix_hook_content_filter_and_services(tmp_path):
    cfg = configdir.read(tmp_path)
    hooks = DAEMON.postfix(load(), cfg)
    assert hooks.content_filter == "smtp-amavis:[127.0.0.1]:10024"
    client, reinject = hooks.master_services
    assert client.startswith("smtp-amavis unix") and "smtp_send_xforward_command=yes" in client
    assert reinject.startswith("127.0.0.1:10025 inet")
    opts = dict(line.strip()[3:].split("=", 1) for line in reinject.splitlines()[1:])
    assert opts["content_filter"] == "" and opts["smtpd_milters"] == ""
    assert opts["mynetworks"] == "127.0.0.0/8"
    assert opts["smtpd_recipient_restrictions"] == "permit_mynetworks,reject"
    assert "no_milters" in opts["receive_override_options"]
    assert "no_address_mappings" not in opts["receive_override_options"]   # aliases expanded before the filter
    assert DAEMON.postfix(load(ENABLE_AMAVIS=0), cfg) == PostfixHooks()


def test_postfix_main_and_master_with_amavis_golden(tmp_path):
    files = all_files(tmp_path)
    golden("main.cf", files["/etc/postfix/main.cf"].content)
    golden("master.cf", files["/etc/postfix/master.cf"].content)
    assert "content_filter = smtp-amavis:[127.0.0.1]:10024\n" in files["/etc/postfix/main.cf"].content


def test_off_means_no_hook_and_no_files(tmp_path):
    files = all_files(tmp_path, ENABLE_AMAVIS=0)
    assert "content_filter" not in files["/etc/postfix/main.cf"].content
    assert "smtp-amavis" not in files["/etc/postfix/master.cf"].content
    for path in (config.CONF, config.USER, config.DOMAINS, config.SA_LOCAL, config.SA_RULES):
        assert files[path].content is None, path


# --- Amavis's files -------------------------------------------------------------------------------------

def test_amavis_conf_defaults_golden(tmp_path):
    files = render(tmp_path)
    golden("45-mailwright", files[config.CONF].content)
    c = files[config.CONF].content
    assert "@bypass_spam_checks_maps = (1);" in c and "@spam_scanners = ();" in c   # SA not even loaded
    assert "@bypass_virus_checks_maps = (1);" in c                                 # no ClamAV


def test_amavis_conf_spamassassin_golden(tmp_path):
    files = render(tmp_path, ENABLE_SPAMASSASSIN=1, SA_TAG="-1.5", SA_TAG2="3", SA_KILL="8.25",
                   SPAMASSASSIN_SPAM_TO_INBOX=0, AMAVIS_LOGLEVEL=2)
    c = files[config.CONF].content
    golden("45-mailwright-spamassassin", c)
    assert "$sa_tag_level_deflt = -1.5;\n$sa_tag2_level_deflt = 3;\n$sa_kill_level_deflt = 8.25;\n" in c
    assert "$final_spam_destiny = D_BOUNCE;" in c and "$sa_spam_subject_tag = undef;" in c
    assert "$log_level = 2;" in c
    assert "@spam_scanners" not in c


def test_spam_to_inbox_passes(tmp_path):
    assert "$final_spam_destiny = D_PASS;" in render(tmp_path, ENABLE_SPAMASSASSIN=1)[config.CONF].content


def test_clamav_on_leaves_virus_checks_to_the_scanners(tmp_path):
    c = render(tmp_path, ENABLE_CLAMAV=1)[config.CONF].content
    assert "@bypass_virus_checks_maps = (1);" not in c and "@av_scanners = ();" not in c
    assert "\\%bypass_virus_checks" in c


def test_systemd_keeps_syslog_and_debians_user(tmp_path):
    folder = folder_with(tmp_path)
    s = S.load(environ={"MAILWRIGHT_INIT": "systemd"}, fqdn=FQDN)
    c = {f.path: f for f in DAEMON.files(s, configdir.read(folder), None)}[config.CONF].content
    assert "$DO_SYSLOG" not in c and "$daemon_user" not in c
    assert "$pid_file = '/run/amavis/amavisd.pid';" in c


def test_local_domains_follow_accounts_and_aliases_and_reload_amavis(tmp_path):
    f = render(tmp_path)[config.DOMAINS]
    assert [line for line in f.content.splitlines() if not line.startswith("#")] == ["example.test", "other.test"]
    assert f.reloads is None         # ops.plan resolves it to the owner, amavis: a change reloads it
    planned = all_files(tmp_path)[config.DOMAINS]
    assert planned.reloads == ("amavis",)


def test_amavis_cf_becomes_50_user(tmp_path):
    files = render(tmp_path, {"amavis.cf": "$sa_tag_level_deflt = -999;\n"})
    c = files[config.USER].content
    assert "$sa_tag_level_deflt = -999;\n" in c and c.rstrip().endswith("1;  # ensure a defined return")
    golden("50-user-default", render(tmp_path / "x")[config.USER].content)


def test_scores_reach_perl_only_as_numbers():
    with pytest.raises(S.SettingsError):
        load(SA_TAG="2; system('id')")
    with pytest.raises(S.SettingsError):
        load(AMAVIS_LOGLEVEL=6)
    assert load(SA_KILL="-3.5").SA_KILL == "-3.5"


def test_spamassassin_without_amavis_is_forced_off_with_a_warning(caplog):
    with caplog.at_level(logging.WARNING):
        s = load(ENABLE_AMAVIS=0, ENABLE_SPAMASSASSIN=1)
    assert not s.ENABLE_SPAMASSASSIN
    assert "ENABLE_SPAMASSASSIN=1 needs ENABLE_AMAVIS=1" in caplog.text


def test_amavis_conf_parses_as_perl(tmp_path):
    """The generated file is valid Perl (perl -c, with the Amavis names it uses declared)."""
    perl = "/usr/bin/perl"
    if not os.path.exists(perl):
        pytest.skip("no perl here")
    c = render(tmp_path, ENABLE_SPAMASSASSIN=1)[config.CONF].content
    prelude = ("no strict; sub read_hash { return {} } sub D_PASS {1} sub D_BOUNCE {2} "
               "our (%bypass_spam_checks, @bypass_spam_checks_acl, $bypass_spam_checks_re);\n")
    done = subprocess.run([perl, "-c", "-e", prelude + c.replace("use strict;", "")], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr



def run_perl(code: str) -> subprocess.CompletedProcess:
    perl = "/usr/bin/perl"
    if not os.path.exists(perl):
        pytest.skip("no perl here")
    return subprocess.run([perl, "-e", code], capture_output=True, text=True)


def test_amavis_keeps_no_statistics_database(tmp_path):
    """No BerkeleyDB (amavisd-nanny/agent's statistics, the per-message cache): about 4 MB of Amavis's memory."""
    for env in ({}, {"ENABLE_SPAMASSASSIN": 1}):
        c = render(tmp_path / str(len(env)), **env)[config.CONF].content
        assert "\n$enable_db = 0;\n" in c and "\n$enable_global_cache = 0;\n" in c


def test_amavis_leaves_unused_modules_to_load_on_demand(tmp_path):
    """The rendered file, run as Amavis runs it (after Amavis::Boot), makes Amavis's preloading skip the
    CJK encodings and the SpamAssassin plugins no .pre file loads, and passes everything else through
    (alternatives lists too)."""
    c = render(tmp_path, ENABLE_SPAMASSASSIN=1)[config.CONF].content
    prelude = ("no strict; sub read_hash { return {} } sub D_PASS {1} sub D_BOUNCE {2} "
               "our (%bypass_spam_checks, @bypass_spam_checks_acl, $bypass_spam_checks_re);\n"
               "package Amavis::Boot; our @seen; sub fetch_modules { my ($r, $q, @m) = @_; "
               "push @seen, map { ref $_ ? join('|', @$_) : $_ } @m; [] } package main;\n")
    after = ("\n; my $missing = Amavis::Boot::fetch_modules('PRE-COMPILE OPTIONAL MODULES', 0, qw(Encode "
             "Encode::Byte Encode::JP Encode::CN Encode::KR Encode::TW Mail::SpamAssassin::Plugin::TextCat "
             "Mail::SpamAssassin::Plugin::Rule2XSBody Mail::SpamAssassin::Plugin::Pyzor Razor2::Client::Agent "
             "Mail::SpamAssassin::Plugin::Check Mail::SpamAssassin::Plugin::Bayes Mail::DKIM::Verifier), "
             "[qw(Net::LibIDN2 Net::LibIDN)]);\n"
             "print join(' ', @Amavis::Boot::seen), ' ', ref $missing, \"\\n\";")
    done = run_perl(prelude + c.replace("use strict;", "") + after)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["Encode", "Encode::Byte", "Mail::SpamAssassin::Plugin::Check",
                                   "Mail::SpamAssassin::Plugin::Bayes", "Mail::DKIM::Verifier",
                                   "Net::LibIDN2|Net::LibIDN", "ARRAY"]


def test_amavis_conf_without_amavis_boot_is_harmless(tmp_path):
    """Read where Amavis::Boot is not loaded (amavisd's own `test-config` reads it the same way), the
    file defines no fetch_modules of its own."""
    c = render(tmp_path, ENABLE_SPAMASSASSIN=1)[config.CONF].content
    prelude = ("no strict; sub read_hash { return {} } sub D_PASS {1} sub D_BOUNCE {2} "
               "our (%bypass_spam_checks, @bypass_spam_checks_acl, $bypass_spam_checks_re);\n")
    done = run_perl(prelude + c.replace("use strict;", "") + "\n; print defined &Amavis::Boot::fetch_modules ? 'defined' : 'none';")
    assert done.returncode == 0, done.stderr
    assert done.stdout == "none"

PRELUDE = ("no strict; sub read_hash { return {} } sub D_PASS {1} sub D_BOUNCE {2} "
           "our (%bypass_spam_checks, @bypass_spam_checks_acl, $bypass_spam_checks_re);\n")


@pytest.mark.parametrize("env", [{}, {"ENABLE_SPAMASSASSIN": 1}])
def test_amavis_answers_tcp_clients_without_nagle_delay(tmp_path, env):
    """Run as Amavis runs it (Amavis's post_accept_hook defined), the file makes each accepted TCP
    connection TCP_NODELAY (Nagle + Postfix's delayed ACK cost 40 ms a message), leaves a unix socket
    (amavisd-release's) alone, and still calls Amavis's own hook."""
    c = render(tmp_path, **env)[config.CONF].content
    hook = ("use Socket; use IO::Socket::INET; use IO::Socket::UNIX;\n"
            "package Amavis; our @called; sub post_accept_hook { push @called, ref $_[0]{server}{client} } package main;\n")
    after = r"""
; my $listen = IO::Socket::INET->new(Listen => 1, LocalAddr => '127.0.0.1', LocalPort => 0) or die "listen: $!";
my $peer = IO::Socket::INET->new(PeerAddr => '127.0.0.1', PeerPort => $listen->sockport) or die "connect: $!";
my $tcp = $listen->accept or die "accept: $!";
Amavis::post_accept_hook({server => {client => $tcp}});
my ($u1, $u2) = IO::Socket::UNIX->socketpair(AF_UNIX, SOCK_STREAM, PF_UNSPEC) or die "socketpair: $!";
Amavis::post_accept_hook({server => {client => $u1}});
Amavis::post_accept_hook({server => {}});
print unpack('i', getsockopt($tcp, Socket::IPPROTO_TCP(), Socket::TCP_NODELAY())) ? 'nodelay' : 'nagle', ' ',
  unpack('i', getsockopt($peer, Socket::IPPROTO_TCP(), Socket::TCP_NODELAY())) ? 'nodelay' : 'nagle', ' ', scalar @Amavis::called, "\n";
"""
    done = run_perl(PRELUDE + hook + c.replace("use strict;", "") + after)
    assert done.returncode == 0, done.stderr
    assert done.stderr == ""
    # the accepted connection answers at once; the client's end (Postfix's) is not Amavis's to set
    assert done.stdout.split() == ["nodelay", "nagle", "3"]


# Net::Server 2.x's PreFork::post_configure, as far as the server counts go: the defaults' clamp
# (min_servers raised to max_servers when max_servers < 5) and its fatal checks.
PREFORK = r"""
package Net::Server::PreFork; our @fatal;
sub post_configure { my $p = $_[0]{server};
  $p->{min_servers} = $p->{max_servers} if defined $p->{min_servers} && 5 > $p->{max_servers};
  push @fatal, 'max_spare' if $p->{max_spare_servers} >= $p->{max_servers};
  push @fatal, 'min_spare' if $p->{min_spare_servers} > $p->{min_servers} || $p->{min_spare_servers} > $p->{max_spare_servers};
  'configured' }
package main;
"""


@pytest.mark.parametrize("env", [{}, {"ENABLE_SPAMASSASSIN": 1}])
def test_amavis_idles_with_one_child_and_forks_the_second_on_demand(tmp_path, env):
    """Run as Amavis runs it (its variables handed to Net::Server::PreFork as Amavis does), the file keeps
    one child idle and a second forked on demand up to the transport's limit (min_servers 1, one spare,
    max_servers = the smtp-amavis process limit), although Net::Server raises min_servers to max_servers
    below 5 (the parent plus two idle children: 1.3 MB more)."""
    c = render(tmp_path, **env)[config.CONF].content
    after = r"""
; my $self = { server => { max_servers => $max_servers, min_servers => $min_servers,
  min_spare_servers => $min_spare_servers, max_spare_servers => $max_spare_servers } };
my $ret = Net::Server::PreFork::post_configure($self);
print join(' ', $ret, @{ $self->{server} }{qw(min_servers min_spare_servers max_spare_servers max_servers)},
  scalar @Net::Server::PreFork::fatal), "\n";
"""
    done = run_perl(PRELUDE + PREFORK + c.replace("use strict;", "") + after)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["configured", "1", "1", "1", str(config.CHILDREN), "0"]


def test_amavis_with_one_child_from_amavis_cf_still_starts(tmp_path):
    """An amavis.cf with `$max_servers = 1` (read after the file): the spare counts are brought within it
    instead of Net::Server refusing to start (its `max_spare_servers must be less than max_servers`)."""
    c = render(tmp_path)[config.CONF].content
    after = r"""
; $max_servers = 1;
my $self = { server => { max_servers => $max_servers, min_servers => $min_servers,
  min_spare_servers => $min_spare_servers, max_spare_servers => $max_spare_servers } };
Net::Server::PreFork::post_configure($self);
print join(' ', @{ $self->{server} }{qw(min_servers min_spare_servers max_spare_servers max_servers)},
  scalar @Net::Server::PreFork::fatal), "\n";
"""
    done = run_perl(PRELUDE + PREFORK + c.replace("use strict;", "") + after)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["1", "0", "0", "1", "0"]


def test_amavis_conf_without_amavis_hooks_defines_none(tmp_path):
    """Read where Amavis is not loaded (a syntax check), the file defines no post_accept_hook of its own."""
    c = render(tmp_path)[config.CONF].content
    done = run_perl(PRELUDE + c.replace("use strict;", "")
                    + "\n; print defined &Amavis::post_accept_hook ? 'defined' : 'none';")
    assert done.returncode == 0, done.stderr
    assert done.stdout == "none"

# --- SpamAssassin's files ------------------------------------------------------------------------------------

def test_spamassassin_files(tmp_path):
    files = render(tmp_path, {"spamassassin-rules.cf": "score GTUBE 500\n"}, ENABLE_SPAMASSASSIN=1,
                   SA_SHORTCIRCUIT_BAYES_SPAM=1)
    golden("local.cf-shortcircuit-spam", files[config.SA_LOCAL].content)
    assert "\nshortcircuit BAYES_99 spam\n" in files[config.SA_LOCAL].content
    assert "\n# shortcircuit BAYES_00 ham" in files[config.SA_LOCAL].content
    assert files[config.SA_RULES].content == "score GTUBE 500\n"
    off = render(tmp_path / "off", {"spamassassin-rules.cf": "score GTUBE 500\n"})
    assert off[config.SA_LOCAL].content is None and off[config.SA_RULES].content is None



# Debian's v310.pre (spamassassin 4.0.1) loads these; mailwright's copy leaves out the last three.
DEBIAN_V310 = {"Pyzor", "Razor2", "SpamCop", "AutoLearnThreshold", "WelcomeListSubject", "MIMEHeader", "ReplaceTags"}


def loaded_plugins(pre: str) -> set[str]:
    prefix = "loadplugin Mail::SpamAssassin::Plugin::"
    return {line[len(prefix):].split()[0] for line in pre.splitlines() if line.startswith(prefix)}


def test_spamassassin_plugins_without_pyzor_razor_spamcop(tmp_path):
    files = render(tmp_path, ENABLE_SPAMASSASSIN=1)
    f = files[config.SA_PLUGINS]
    assert loaded_plugins(f.content) == DEBIAN_V310 - {"Pyzor", "Razor2", "SpamCop"}
    assert "#loadplugin Mail::SpamAssassin::Plugin::SpamCop\n" in f.content
    assert f.reloads is None                     # Amavis's: a change reloads Amavis, which loads SpamAssassin


def test_spamassassin_off_leaves_debians_plugin_file_alone(tmp_path):
    assert config.SA_PLUGINS not in render(tmp_path)
    assert config.SA_PLUGINS not in all_files(tmp_path / "off", ENABLE_AMAVIS=0)

# --- Dovecot's spam scripts ---------------------------------------------------------------------------------

def dovecot(tmp_path, **env):
    folder = folder_with(tmp_path)
    return {f.path: f for f in dovecot_config.files(load(**env), configdir.read(folder), _tls())}


def _tls():
    from ops import tls
    return tls.Tls(**{f: None for f in tls.Tls.__dataclass_fields__}) if hasattr(tls, "Tls") else None


def plugin_lines(files) -> list[str]:
    text = files["/etc/dovecot/dovecot.conf"].content
    return [line.strip() for line in text.split("plugin {", 1)[1].split("}", 1)[0].splitlines()
            if line.strip().startswith("sieve")]


def test_spam_scripts_with_spamassassin(tmp_path):
    files = dovecot(tmp_path, ENABLE_SPAMASSASSIN=1, MARK_SPAM_AS_READ=1, SPAM_SUBJECT="[SPAM] ")
    assert plugin_lines(files) == [
        "sieve = file:~/sieve;active=~/.dovecot.sieve",
        "sieve_before = /etc/dovecot/sieve/spam_subject.sieve",
        "sieve_after = /etc/dovecot/sieve/60-spam_mark_as_read.sieve",
        "sieve_after2 = /etc/dovecot/sieve/70-spam_to_junk.sieve",
        "sieve_global_extensions = +editheader",
    ]
    junk = files[dovecot_config.SPAM_JUNK]
    golden("70-spam_to_junk.sieve", junk.content)
    assert 'fileinto :create :flags "\\\\Seen" "Junk";' in junk.content
    assert junk.after == ("sievec -c /etc/dovecot/dovecot.conf /etc/dovecot/sieve/70-spam_to_junk.sieve",)
    golden("spam_subject.sieve", files[dovecot_config.SPAM_SUBJECT].content)


def test_spam_subject_is_a_sieve_string(tmp_path):
    files = dovecot(tmp_path, ENABLE_SPAMASSASSIN=1, SPAM_SUBJECT='*"\\ ')
    assert 'addheader :last "Subject" "*\\"\\\\ ${subject}";' in files[dovecot_config.SPAM_SUBJECT].content


def test_no_spam_scripts_without_spamassassin(tmp_path):
    files = dovecot(tmp_path, MOVE_SPAM_TO_JUNK=1, SPAM_SUBJECT="[SPAM] ")
    assert plugin_lines(files) == ["sieve = file:~/sieve;active=~/.dovecot.sieve"]
    for path in (dovecot_config.SPAM_SUBJECT, dovecot_config.SPAM_READ, dovecot_config.SPAM_JUNK):
        assert files[path].content is None
        assert files[path[:-len(".sieve")] + ".svbin"].content is None


def test_user_global_scripts_come_first(tmp_path):
    folder = folder_with(tmp_path, {"after.dovecot.sieve": "keep;\n"})
    files = {f.path: f for f in dovecot_config.files(load(ENABLE_SPAMASSASSIN=1), configdir.read(folder), _tls())}
    assert [line for line in plugin_lines(files) if line.startswith("sieve_after")] == [
        "sieve_after = /etc/dovecot/sieve/after.sieve", "sieve_after2 = /etc/dovecot/sieve/70-spam_to_junk.sieve"]


# --- the jobs ----------------------------------------------------------------------------------------------------

def test_virusmails_deletes_only_mail_older_than_the_delay(tmp_path):
    now = time.time()
    old, young = tmp_path / "a" / "old", tmp_path / "b" / "young"
    for f, age_days in ((old, 8.5), (young, 6.5)):
        f.parent.mkdir()
        f.write_text("x")
        os.utime(f, (now - age_days * 86400,) * 2)
    assert jobs.virusmails(7, tmp_path, now) == 1
    assert not old.exists() and young.exists()


class Done:
    def __init__(self, rc, out=""):
        self.returncode, self.stdout, self.stderr = rc, "", out


def test_sa_update_unreachable_keeps_the_rules_and_says_so(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(jobs, "LOG", str(tmp_path / "mail.log"))
    calls = []

    def run(argv, **_):
        calls.append(argv)
        return Done(4, "channel: could not reach mirror\nerror: no mirror could be reached")

    assert jobs.sa_update(kam=True, run=run, keys=str(tmp_path / "keys")) is False
    assert calls[0][-2:] == ["--import", "/usr/share/spamassassin/GPG.KEY"]     # no keyring yet: imported first
    assert [a[-1] for a in calls[1:]] == ["-v", "kam.sa-channels.mcgrail.com"]
    text = (tmp_path / "mail.log").read_text()
    assert "failed (exit status 4: error: no mirror could be reached); the rules in use stay" in text
    assert text.count("the rules in use stay") == 2


def test_sa_update_new_rules_reported(tmp_path):
    (tmp_path / "pubring.kbx").write_text("")
    calls = []
    assert jobs.sa_update(kam=False, run=lambda argv, **_: calls.append(argv) or Done(0), keys=str(tmp_path))
    assert calls == [["sa-update", "-v"]]           # a keyring exists: no import
    assert jobs.sa_update(kam=False, run=lambda argv, **_: Done(1), keys=str(tmp_path)) is False


# --- the install step -----------------------------------------------------------------------------------------

def test_a_systemd_host_keeps_systemd():
    """systemd-standalone-sysusers conflicts with systemd: on a VPS apt would remove systemd for it."""
    from ops.amavis.deploy import packages_for
    assert "systemd-standalone-sysusers" in packages_for(DAEMON.packages, has_systemd=False)
    assert "systemd-standalone-sysusers" not in packages_for(DAEMON.packages, has_systemd=True)
    assert "amavisd-new" in packages_for(DAEMON.packages, has_systemd=True)


@pytest.mark.parametrize("env, loaded", [({}, False), ({"SA_SHORTCIRCUIT_BAYES_SPAM": "1"}, True),
                                         ({"SA_SHORTCIRCUIT_BAYES_HAM": "1"}, True)])
def test_shortcircuit_settings_load_the_plugin_their_rules_need(tmp_path, env, loaded):
    """local.cf's `shortcircuit` lines sit in `ifplugin Shortcircuit`, a plugin Debian's v320.pre leaves
    commented out: without a loadplugin line the settings would do nothing."""
    files = render(tmp_path, ENABLE_SPAMASSASSIN=1, **env)
    pre = files[config.SA_EXTRA_PLUGINS].content
    local = files[config.SA_LOCAL].content
    if loaded:
        assert "Shortcircuit" in loaded_plugins(pre) and config.SA_EXTRA_PLUGINS.endswith(".pre")
        assert any(line.startswith("shortcircuit BAYES_") for line in local.splitlines())
    else:
        assert pre is None
