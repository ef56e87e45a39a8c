"""mailwright's init: PID 1 of the container, and the change watcher on a VPS.

Container (`python3 -m mailwright.init`): runs the configure stage, starts each
daemon in the foreground as a child, logs `<FQDN> is up and running`, then
waits for signals. Every DMS_CONFIG_POLL seconds it fingerprints the watched
inputs (config folder files, certificates) and re-runs the configure stage
when one changed; a daemon that dies is restarted; SIGTERM stops everything
cleanly.

VPS (`python3 -m mailwright.init --watch`, a systemd unit): the same poll loop,
with systemd owning the daemons. `--adopt`: a container configured by pyinfra's
docker connector, where PID 1 is something else: settings from /etc/dms-settings.

This process stays small on purpose (it idles for the container's whole life):
only the standard library's lightest modules are imported here; the
configure stage, with jinja2 and the settings model, runs in a child process.
"""

import os
import signal
import subprocess
import sys
import time

CONFIGURE = [sys.executable, "-m", "mailwright.configure"]
# Children run from the runtime's path, not our cwd: a deploy may swap the runtime
# folder under a running init.
RUNTIME = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
WATCH_LIST = "/etc/mailwright/watch"
SETTINGS = "/etc/dms-settings"
MARKER = "/CONTAINER_START"
MAIL_LOG = "/var/log/mail/mail.log"
DAEMON_CMDS = {
    "postfix": ["/usr/lib/postfix/sbin/master", "-d"],
    "dovecot": ["/usr/sbin/dovecot", "-F"],
}


SIGNALS = [signal.SIGTERM, signal.SIGINT, signal.SIGCHLD, signal.SIGHUP]


def _unblock():
    # Children inherit the blocked mask set for sigtimedwait(); daemons must see SIGTERM.
    signal.pthread_sigmask(signal.SIG_UNBLOCK, SIGNALS)


def log(level, message):
    stamp = time.strftime("%Y-%m-%dT%H:%M:%S%z")
    print(f"{stamp} {level} mailwright-init: {message}", flush=True)


def read_settings():
    import shlex
    with open(SETTINGS) as f:
        return dict(token.partition("=")[::2] for token in shlex.split(f.read()))


def fingerprint():
    """(mtime, size, inode) of every watched path: cheap enough to run every poll."""
    try:
        with open(WATCH_LIST) as f:
            paths = f.read().split()
    except OSError:
        return None
    state = []
    for path in paths + [os.path.dirname(paths[0])] if paths else paths:
        try:
            st = os.stat(path)
            state.append((path, st.st_mtime_ns, st.st_size, st.st_ino))
        except OSError:
            state.append((path, None))
    return tuple(state)


class config_lock:
    """flock on docker-mailserver's lock file in the config folder (shared with `setup`)."""

    def __init__(self, config_dir):
        self.path = os.path.join(config_dir, "check-for-changes.sh.lock")

    def __enter__(self):
        import fcntl
        try:
            self.fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError:         # read-only config folder: nobody can write it either
            self.fd = None
            return self
        fcntl.flock(self.fd, fcntl.LOCK_EX)
        return self

    def __exit__(self, *exc):
        if self.fd is not None:
            os.close(self.fd)


def listening(port):
    """Whether a TCP socket listens on `port`, read from /proc: a test connection
    would make Postfix spawn postscreen (5 MB) for nothing."""
    wanted = f":{port:04X} "
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            with open(table) as f:
                next(f)
                for line in f:
                    fields = line.split()
                    if fields[3] == "0A" and (fields[1] + " ").endswith(wanted):   # 0A: LISTEN
                        return True
        except OSError:
            pass
    return False


def wait_for_port(port, deadline):
    while time.monotonic() < deadline:
        if listening(port):
            return True
        time.sleep(0.01)
    return False


class Init:
    def __init__(self, mode):
        self.mode = mode            # "pid1", "adopt" (started by a deploy) or "watch" (systemd)
        self.children = {}          # pid -> daemon name
        self.started = {}           # daemon name -> monotonic start time
        self.failures = {}
        self.stopping = False

    # --- configure ----------------------------------------------------------------
    def configure(self, *flags):
        result = subprocess.run(CONFIGURE + list(flags), stdout=subprocess.PIPE, text=True, preexec_fn=_unblock,
                                cwd=RUNTIME, env=dict(os.environ, PYTHONPATH=RUNTIME))
        for line in result.stdout.splitlines():
            log("INFO", line)
        return result.returncode == 0

    # --- daemons ------------------------------------------------------------------
    def start(self, name):
        proc = subprocess.Popen(DAEMON_CMDS[name], stdin=subprocess.DEVNULL, preexec_fn=_unblock)
        self.children[proc.pid] = name
        self.started[name] = time.monotonic()

    def reap(self):
        while True:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            name = self.children.pop(pid, None)
            if name is None or self.stopping:
                continue
            code = os.waitstatus_to_exitcode(status)
            quick = time.monotonic() - self.started[name] < 10
            self.failures[name] = self.failures.get(name, 0) + 1 if quick else 1
            if self.failures[name] > 3:
                log("ERROR", f"{name} keeps exiting (last status {code}); shutting down")
                self.stop()
                sys.exit(1)
            log("WARN", f"{name} exited with status {code}; restarting it")
            self.start(name)

    def stop(self):
        self.stopping = True
        for pid in list(self.children):
            try:
                os.kill(pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
        deadline = time.monotonic() + 20
        while self.children and time.monotonic() < deadline:
            try:
                pid, _ = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                break
            if pid:
                self.children.pop(pid, None)
            else:
                time.sleep(0.05)
        for pid in self.children:
            os.kill(pid, signal.SIGKILL)

    # --- main ---------------------------------------------------------------------
    def run(self):
        signals = SIGNALS
        signal.pthread_sigmask(signal.SIG_BLOCK, signals)
        if self.mode == "watch":
            self.configure("--reload")
            settings = read_settings()
        else:
            if not self.configure(*(["--from-env"] if self.mode == "pid1" else [])):
                log("ERROR", "configuration failed (see above); shutting down")
                return 1
            settings = read_settings()
            if not os.path.exists(MARKER):
                patches = os.path.join(settings["MAILWRIGHT_CONFIG_DIR"], "user-patches.sh")
                if os.path.isfile(patches):
                    log("INFO", "running user-patches.sh")
                    subprocess.run(["/bin/bash", patches], check=False, preexec_fn=_unblock)
                with open(MARKER, "w") as f:
                    f.write(time.strftime("%Y-%m-%dT%H:%M:%S%z\n"))
            daemons = ["postfix"] if settings.get("SMTP_ONLY") == "1" else ["dovecot", "postfix"]
            for name in daemons:
                self.start(name)
            subprocess.Popen(["tail", "-F", "-n", "0", MAIL_LOG], stderr=subprocess.DEVNULL, preexec_fn=_unblock)
            deadline = time.monotonic() + 60
            ports = [25] + ([143] if "dovecot" in daemons and settings.get("ENABLE_IMAP") == "1" else [])
            if not all(wait_for_port(p, deadline) for p in ports):
                log("ERROR", f"ports {ports} did not open within 60 s; shutting down")
                self.stop()
                return 1
            log("INFO", f"{settings['OVERRIDE_HOSTNAME']} is up and running")
        poll = int(settings.get("DMS_CONFIG_POLL", "2"))
        seen = fingerprint()
        while True:
            info = signal.sigtimedwait(signals, poll)
            if info is not None and info.si_signo in (signal.SIGTERM, signal.SIGINT):
                log("INFO", "stopping")
                self.stop()
                return 0
            self.reap()
            now = fingerprint()
            if now != seen or (info is not None and info.si_signo == signal.SIGHUP):
                # Under `setup`'s lock, so configure never reads half an edit; and the
                # fingerprint is taken before configure, so an edit made meanwhile is seen next poll.
                with config_lock(settings["MAILWRIGHT_CONFIG_DIR"]):
                    seen = fingerprint()
                    self.configure("--reload")


def main():
    mode = {"--watch": "watch", "--adopt": "adopt"}.get(sys.argv[1] if sys.argv[1:] else "", "pid1")
    sys.exit(Init(mode).run())


if __name__ == "__main__":
    main()
