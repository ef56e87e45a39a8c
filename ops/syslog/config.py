"""The syslog sink's rules (/etc/syslog.conf): the `mail` facility, every priority, to the mail log."""

from __future__ import annotations

from ops.configdir import ConfigDir
from ops.render import ConfigFile, rendered
from ops.settings import Settings
from ops.syslog.daemon import CONF, MAIL_LOG, wanted


def files(s: Settings, _cfg: ConfigDir, _tls=None) -> list[ConfigFile]:
    if not wanted(s):
        return [ConfigFile(CONF, None)]
    return [rendered(CONF, dict(mail_log=MAIL_LOG))]
