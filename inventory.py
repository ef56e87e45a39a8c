"""pyinfra inventory: your VPS(es). Edit, then `pyinfra inventory.py deploy.py`.

Each host takes the docker-mailserver variables as host data, or a
`mailserver_env` file; `MAILWRIGHT_INIT = "systemd"` is what a VPS runs.
MAILWRIGHT_HOSTS (comma separated) overrides the host list from the shell.
"""

import os

_data = {
    "ssh_user": "root",
    "MAILWRIGHT_INIT": "systemd",
    "mailserver_env": "mailserver.env" if os.path.exists("mailserver.env") else None,
    "mailwright_config_source": "docker-data/dms/config" if os.path.isdir("docker-data/dms/config") else None,
}

mailservers = [(name, dict(_data)) for name in os.environ.get("MAILWRIGHT_HOSTS", "mail.example.com").split(",")]
