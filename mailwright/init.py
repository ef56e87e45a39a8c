"""mailwright's init: start-up of the container, and of the change watcher on a VPS.

Container (`python3 -m mailwright.init`, PID 1): runs the configure stage from
the environment (a bad setting stops the container here, naming it), runs
`user-patches.sh` once per container, then execs `supervise.sh`, which starts
each daemon in the foreground, logs `<FQDN> is up and running`, restarts a
daemon that dies, re-runs the configure stage when a watched file (config
folder, certificates) changes, and stops everything on SIGTERM.

`--adopt`: a container configured by pyinfra's docker connector, where PID 1 is
something else: settings come from /etc/dms-settings. `--watch` (systemd unit
on a VPS): systemd owns the daemons; only the change watcher runs.

The exec hands PID 1 to a shell: Python's ~9 MB would otherwise stay resident
for the container's whole life.
"""

import os
import subprocess
import sys
import time

from ops.settings import read_dms_settings

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


def main(mode):
    flags = {"pid1": ["--from-env"], "adopt": [], "watch": ["--reload"]}[mode]
    if not configure(*flags) and mode != "watch":
        log("ERROR", "configuration failed (see above); shutting down")
        return 1
    s = read_dms_settings()     # what the configure stage just wrote: one parser of that file
    daemons = ["dovecot", "postfix"] if s.dovecot_enabled else ["postfix"]
    ports = ["25"] + (["143"] if s.dovecot_enabled and s.ENABLE_IMAP else [])
    if mode != "watch" and not os.path.exists(MARKER):
        # docker-mailserver runs user-patches.sh once per container, not on a restart.
        patches = os.path.join(s.MAILWRIGHT_CONFIG_DIR, "user-patches.sh")
        if os.path.isfile(patches):
            log("INFO", "running user-patches.sh")
            subprocess.run(["/bin/bash", patches], check=False)
        with open(MARKER, "w") as f:
            f.write(time.strftime("%Y-%m-%dT%H:%M:%S%z\n"))
    env = dict(os.environ, MW_MODE=mode, MW_DAEMONS=" ".join(daemons), MW_PORTS=" ".join(ports),
               MW_POLL=str(s.DMS_CONFIG_POLL), MW_CONFIG_DIR=s.MAILWRIGHT_CONFIG_DIR, MW_FQDN=s.fqdn)
    script = os.path.join(RUNTIME, "mailwright", "supervise.sh")
    os.execve("/bin/sh", ["/bin/sh", script], env)


if __name__ == "__main__":
    sys.exit(main({"--watch": "watch", "--adopt": "adopt"}.get(sys.argv[1] if sys.argv[1:] else "", "pid1")))
