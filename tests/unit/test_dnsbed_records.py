"""The test bed's record syntax (tests/harness/dnsbed.py): TXT values split into DNS strings and back.

SPF, DKIM and DMARC records longer than 255 bytes must reach the resolver as several strings that
join to the original; a mistake here would make every DKIM test of the bed fail or pass for the
wrong reason.
"""

from __future__ import annotations

import pytest
from hypothesis import given, strategies as st

from harness.dnsbed import BedError, bind_txt_value, fqdn, rdata, reverse_name, txt_rdata, txt_strings


@given(st.text(max_size=1200))
def test_txt_split_joins_back_to_the_value(text):
    strings = txt_strings(txt_rdata(text))
    assert all(len(s) <= 255 for s in strings)
    assert b"".join(strings).decode() == text


def test_txt_split_counts_bytes_and_keeps_utf8_sequences_whole():
    value = "é" * 200                                   # 400 bytes
    strings = txt_strings(txt_rdata(value))
    assert [len(s) for s in strings] == [254, 146]
    assert all(s.decode() for s in strings)


def test_txt_quotes_and_backslashes_are_escaped():
    assert txt_rdata('say "hi" \\ there') == '"say \\"hi\\" \\\\ there"'


def test_opendkim_genkey_record_file_gives_the_joined_value():
    zone = ('mail._domainkey\tIN\tTXT\t( "v=DKIM1; h=sha256; k=rsa; "\n'
            '\t  "p=MIIBIjANBgkq" "hkiG9w0B" )  ; ----- DKIM key mail for example.test\n')
    assert bind_txt_value(zone) == "v=DKIM1; h=sha256; k=rsa; p=MIIBIjANBgkqhkiG9w0B"


@pytest.mark.parametrize("rtype, value, expected", [
    ("MX", (10, "MX2.Example.org"), "10 mx2.example.org."),
    ("MX", "20 mx1.example.test.", "20 mx1.example.test."),
    ("A", "10.231.25.11", "10.231.25.11"),
    ("PTR", "mx1.example.test", "mx1.example.test."),
])
def test_rdata(rtype, value, expected):
    assert rdata(rtype, value) == expected


@pytest.mark.parametrize("bad", ["", "a b.example", 'x".example', "x;y.example"])
def test_names_unbound_would_misread_are_refused(bad):
    with pytest.raises(BedError):
        fqdn(bad)


def test_reverse_name():
    assert reverse_name("10.231.25.11") == "11.25.231.10.in-addr.arpa."
