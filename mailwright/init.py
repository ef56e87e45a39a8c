"""mailwright's init: start-up of the container, and of the change watcher on a VPS.

Container (`python3 -m mailwright.init`, PID 1): runs the configure stage from
the environment (a bad setting stops the container here, naming it), runs
`user-patches.sh` once per container, then execs `supervise.sh`, which starts
each enabled daemon (/etc/mailwright/daemons) in the foreground, runs the scheduled jobs
(/etc/mailwright/jobs), logs `<FQDN> is up and running`, restarts a
daemon that dies, re-runs the configure stage when a watched file (config
folder, certificates) changes, and stops everything on SIGTERM.

`--adopt`: a container configured by pyinfra's docker connector, where PID 1 is
something else: settings come from /etc/dms-settings. `--watch` (systemd unit
on a VPS): systemd owns the daemons; only the change watcher runs.

The exec hands PID 1 to a shell: Python's ~9 MB would otherwise stay resident
for the container's whole life.

Any other command given to the image (`docker run --rm -v CONFIG:/tmp/docker-mailserver
IMAGE setup email add …`, `… IMAGE bash`) runs instead of the server, as docker-mailserver's
`dumb-init --` entrypoint runs its CMD: no daemon starts, no hostname is needed, and the
command's exit status is the container's.
"""

import os
import subprocess
import sys
import time

from ops.settings import LOCK_NAME, read_dms_settings

MARKER = "/CONTAINER_START"
RUNTIME = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def log(level, message):
    print(f"{time.strftime('%Y-%m-%dT%H:%M:%S%z')} {level} mailwright-init: {message}", flush=True)


def configure(*flags):
    """The configure stage as a child, its `changed …` lines logged as the container's own."""
    result = subprocess.run([sys.executable, "-m", "mailwright.configure", *flags], stdout=subprocess.PIPE,
                            text=True, cwd=RUNTIME, env=dict(os.environ, PYTHONPATH=RUNTIME))
    for line in result.stdout.splitlines():
        log("INFO", line)
    return result.returncode == 0


def supervisor_env(mode, s):
    """supervise.sh's environment: every path and name it uses comes from a Python constant.
    Which daemons and jobs it runs it reads from the tables the configure stage wrote."""
    from ops import daemons
    return dict(MW_MODE=mode, MW_POLL=str(s.DMS_CONFIG_POLL), MW_CONFIG_DIR=s.MAILWRIGHT_CONFIG_DIR,
                MW_LOCK=os.path.join(s.MAILWRIGHT_CONFIG_DIR, LOCK_NAME), MW_WATCH_LIST=daemons.WATCH_LIST,
                MW_PENDING=daemons.PENDING_RELOADS, MW_DAEMONS_FILE=daemons.DAEMONS_FILE,
                MW_JOBS_FILE=daemons.JOBS_FILE, MW_FQDN=s.fqdn)


def main(mode):
    flags = {"pid1": ["--from-env"], "adopt": [], "watch": ["--reload"]}[mode]
    if not configure(*flags) and mode != "watch":
        log("ERROR", "configuration failed (see above); shutting down")
        return 1
    s = read_dms_settings()     # what the configure stage just wrote: one parser of that file
    if not os.path.isabs(s.MAILWRIGHT_CONFIG_DIR):
        # The supervisor's lock and user-patches.sh would otherwise be looked for in the working directory.
        log("ERROR", f"MAILWRIGHT_CONFIG_DIR={s.MAILWRIGHT_CONFIG_DIR!r} in /etc/dms-settings is not an "
                     "absolute path; shutting down")
        return 1
    if mode != "watch" and not os.path.exists(MARKER):
        # docker-mailserver runs user-patches.sh once per container, not on a restart.
        patches = os.path.join(s.MAILWRIGHT_CONFIG_DIR, "user-patches.sh")
        if os.path.isfile(patches):
            log("INFO", "running user-patches.sh")
            subprocess.run(["/bin/bash", patches], check=False)
        with open(MARKER, "w") as f:
            f.write(time.strftime("%Y-%m-%dT%H:%M:%S%z\n"))
    env = dict(os.environ, **supervisor_env(mode, s))
    script = os.path.join(RUNTIME, "mailwright", "supervise.sh")
    os.execve("/bin/sh", ["/bin/sh", script], env)


MODES = {"": "pid1", "--watch": "watch", "--adopt": "adopt"}


def run_command(argv):
    """A one-off command instead of the server: exec'd, so its status and signals are its own."""
    try:
        os.execvp(argv[0], argv)
    except OSError as e:
        code = 127 if isinstance(e, FileNotFoundError) else 126
        print(f"mailwright: cannot run '{argv[0]}': {e.strerror}", file=sys.stderr)
        return code


def dispatch(argv):
    if argv and not argv[0].startswith("-"):
        return run_command(argv)
    if len(argv) > 1 or (argv and argv[0] not in MODES):
        print(f"mailwright: unknown init option {' '.join(argv)!r}; the image takes no option "
              "(start the server), --adopt, --watch, or a command to run (e.g. `setup help`)", file=sys.stderr)
        return 2
    return main(MODES[argv[0] if argv else ""])


if __name__ == "__main__":
    sys.exit(dispatch(sys.argv[1:]))
