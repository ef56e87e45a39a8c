"""The `target` fixture: the same end-to-end subset against the image, a VPS and the docker connector.

Module-scoped and parametrised: pytest runs every test of a module for one
target, tears that target down, then moves to the next, so only one mail server
binds the host's ports at a time.
"""

from __future__ import annotations

import os

import pytest

from harness import scenario as sc
from harness.mailserver import Volumes
from harness.targets import DockerConnectorTarget, ImageTarget, VpsTarget
from harness.vps import Vps

TARGETS = ["image", "vps", "docker"]


@pytest.fixture(scope="module", params=TARGETS)
def target(request, tmp_path_factory, tls):
    kind = request.param
    root = tmp_path_factory.mktemp(f"target-{kind}")
    scenario = sc.build(root / "config", tls)
    t = None
    try:
        if kind == "image":
            image = request.getfixturevalue("image")
            t = ImageTarget(image=image, volumes=Volumes.under(root, scenario.config.path),
                            scenario=scenario, tls=tls)
        elif kind == "vps":
            request.getfixturevalue("deploy_py")
            vps_image = request.getfixturevalue("vps_image")
            machine = Vps(image=vps_image, workdir=root / "vps")
            t = VpsTarget(scenario=scenario, tls=tls, workdir=root, vps=machine)
            # Exploration knob (not used by `make test`): put the config folder elsewhere on the VPS.
            if os.environ.get("MAILWRIGHT_TEST_VPS_CONFIG_DIR"):
                t.settings["MAILWRIGHT_CONFIG_DIR"] = os.environ["MAILWRIGHT_TEST_VPS_CONFIG_DIR"]
            machine.start()
        else:
            request.getfixturevalue("deploy_py")
            base = request.getfixturevalue("base_image")
            t = DockerConnectorTarget(scenario=scenario, tls=tls, workdir=root, base_image=base,
                                      volumes=Volumes.under(root, scenario.config.path))
        t.start()
        yield t
    finally:
        if t is not None:
            t.teardown()


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    """On a failure, attach the target's logs (docker logs / pyinfra output, mail.log, journal)."""
    outcome = yield
    report = outcome.get_result()
    if report.when == "call" and report.failed:
        t = item.funcargs.get("target") if hasattr(item, "funcargs") else None
        b = item.funcargs.get("bed") if hasattr(item, "funcargs") else None
        if b is not None:
            try:
                report.sections.append(("test bed diagnostics", b.diagnostics()))
            except Exception as e:
                report.sections.append(("test bed diagnostics", f"unavailable: {e!r}"))
        if t is not None:
            try:
                report.sections.append((f"{t.kind} target diagnostics", t.diagnostics()))
            except Exception as e:  # the target may be gone
                report.sections.append((f"{t.kind} target diagnostics", f"unavailable: {e!r}"))


# --- the multi-server test bed (issue 10): tests/harness/dnsbed.py, how-to in its docstring ---------

@pytest.fixture(scope="session")
def dnsbed_session(image, base_image, tls, tmp_path_factory):
    """The bed's internal network and DNS server for the whole session (harness.dnsbed.Bed)."""
    from harness import dnsbed
    bed = dnsbed.start_session(image, base_image, tmp_path_factory.mktemp("dnsbed"), tls.ca)
    try:
        yield bed
    finally:
        dnsbed.stop_session(bed)


@pytest.fixture(scope="module")
def bed(dnsbed_session):
    """The bed for one module: servers it starts and DNS records it sets are gone after the module.

    `bed.server("mx1.example.test", accounts={...}, env={...})` starts a mail server (A, PTR and
    the MX of its domain published); `bed.dns` changes records; `bed.gateway` is the host's
    client address; `bed.host_address()` / `bed.client(script)` give other client addresses.
    """
    baseline = dnsbed_session.dns.snapshot()
    try:
        yield dnsbed_session
    finally:
        dnsbed_session.end_module(baseline)
