"""Postscreen's DNSBL part of main.cf (ENABLE_DNSBL, POSTSCREEN_ACTION), as docker-mailserver sets it.

docker-mailserver's main.cf carries its DNSBL sites, threshold 3 and whitelist threshold -1;
POSTSCREEN_ACTION replaces the dnsbl, greet and bare_newline actions; with ENABLE_DNSBL=0 it
runs `postconf postscreen_dnsbl_action=ignore` and `postscreen_dnsbl_sites=`.
"""

from __future__ import annotations

import logging

import pytest

from ops import settings as S
from test_postfix_templates import main_cf, param, params

# docker-mailserver's list, site by site (weight `*N`, default 1).
DMS_SITES = [
    "zen.spamhaus.org=127.0.0.[2..11]*3",
    "bl.mailspike.net=127.0.0.[2;14;13;12;11;10]",
    "b.barracudacentral.org*2",
    "bl.spameatingmonkey.net=127.0.0.2",
    "dnsbl.sorbs.net",
    "psbl.surriel.com",
    "list.dnswl.org=127.0.[0..255].0*-2",
    "list.dnswl.org=127.0.[0..255].1*-3",
    "list.dnswl.org=127.0.[0..255].[2..3]*-4",
]


def test_dnsbl_off_by_default_ignores_and_lists_no_site(tmp_path):
    text = main_cf(tmp_path)
    assert param(text, "postscreen_dnsbl_action") == "ignore"
    assert param(text, "postscreen_dnsbl_sites") == ""


def test_dnsbl_on_has_docker_mailservers_sites_and_thresholds(tmp_path):
    text = main_cf(tmp_path, ENABLE_DNSBL=1)
    assert param(text, "postscreen_dnsbl_sites").split() == DMS_SITES
    assert param(text, "postscreen_dnsbl_threshold") == "3"
    assert param(text, "postscreen_dnsbl_whitelist_threshold") == "-1"
    assert param(text, "postscreen_dnsbl_action") == "enforce"


@pytest.mark.parametrize("action", ["enforce", "drop", "ignore"])
def test_postscreen_action_applies_to_dnsbl_greet_and_bare_newline(tmp_path, action):
    text = main_cf(tmp_path, ENABLE_DNSBL=1, POSTSCREEN_ACTION=action)
    for name in ("postscreen_dnsbl_action", "postscreen_greet_action", "postscreen_bare_newline_action"):
        assert param(text, name) == action, name


def test_dnsbl_off_keeps_postscreen_action_for_the_other_tests(tmp_path):
    text = main_cf(tmp_path, ENABLE_DNSBL=0, POSTSCREEN_ACTION="drop")
    assert param(text, "postscreen_dnsbl_action") == "ignore"
    assert param(text, "postscreen_dnsbl_sites") == ""
    assert param(text, "postscreen_greet_action") == "drop"
    assert param(text, "postscreen_bare_newline_action") == "drop"


def test_postfix_main_cf_overrides_the_dnsbl_lines(tmp_path):
    # docker-mailserver users tune DNSBLs in postfix-main.cf; the override wins, once.
    text = main_cf(tmp_path, {"postfix-main.cf": "postscreen_dnsbl_sites = zen.spamhaus.org*3\n"
                                                 "postscreen_dnsbl_threshold = 2\n"}, ENABLE_DNSBL=1)
    assert param(text, "postscreen_dnsbl_sites") == "zen.spamhaus.org*3"
    assert param(text, "postscreen_dnsbl_threshold") == "2"
    assert [n for n, _ in params(text)].count("postscreen_dnsbl_sites") == 1


def test_enable_dnsbl_is_implemented(caplog):
    with caplog.at_level(logging.WARNING, "mailwright.settings"):
        s = S.load(environ={"ENABLE_DNSBL": "1", "POSTSCREEN_ACTION": "drop"},
                   host_data={"MAILWRIGHT_INIT": "container"}, fqdn="mail.example.test")
    assert s.ENABLE_DNSBL is True
    assert "not implemented" not in caplog.text
