"""pyinfra entry point of mailwright.

    pyinfra inventory.py deploy.py                       # VPS(es) over SSH, systemd
    pyinfra @docker/<container> deploy.py --data MAILWRIGHT_INIT=container

Host data (inventory or --data):
    MAILWRIGHT_INIT           systemd | container (required)
    <any docker-mailserver variable>, e.g. OVERRIDE_HOSTNAME, SSL_TYPE, ENABLE_POP3
    mailserver_env            a mailserver.env file on this machine
    mailwright_config_source  a config folder on this machine, copied where the target lacks files
    mailwright_stage          install | configure | all (default)
    mailwright_package_lock   build/packages.lock: pin every Debian package
"""

from pyinfra import host

from ops import mailserver

mailserver.deploy(host.data.dict())
