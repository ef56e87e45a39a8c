"""Session fixtures shared by the integration and end-to-end tests.

Docker tests bind the host's mail ports (every server runs with --network host),
so they run one at a time: one session per machine (a lock file), one image
build per session, one mail server alive at any moment. Every container is
named `mwtest-*`, removed in a finally block, and a sweep at session start
removes leftovers of a crashed session.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

from harness import dockercli as d  # noqa: E402
from harness import vps as vpsmod  # noqa: E402
from harness.tlsutil import TestTLS  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
IMAGE_TAG = "mailwright:latest"


# The unit lane (`make test-unit`) starts no container: a test there that is marked
# `docker` or asks for a fixture that needs the engine is a collection error, not a
# skip, so it cannot hide in the lane when the engine is away. Such tests belong
# in tests/integration or tests/e2e.
UNIT_LANES = (REPO / "tests" / "unit", REPO / "tests" / "plan")
DOCKER_FIXTURES = frozenset({"docker_session", "image", "base_image", "vps_image", "vps", "vps_inventory",
                             "target"})


def docker_in_unit_lane(items) -> list[str]:
    """Node IDs of unit-lane tests that would need the Docker engine."""
    return [item.nodeid for item in items
            if any(lane in item.path.parents for lane in UNIT_LANES)
            and (item.get_closest_marker("docker") or DOCKER_FIXTURES & set(getattr(item, "fixturenames", ())))]


def pytest_collection_modifyitems(config, items):
    misplaced = docker_in_unit_lane(items)
    if misplaced:
        raise pytest.UsageError("tests/unit and tests/plan must not need docker (move these to tests/integration):\n  "
                                + "\n  ".join(misplaced))
    # Docker tests last: fast unit feedback first, and the mail servers' lifetimes
    # (module/session scoped) are not interleaved with other modules.
    items.sort(key=lambda item: 1 if item.get_closest_marker("docker") else 0)


def pytest_configure(config):
    if os.environ.get("PYTEST_XDIST_WORKER"):
        # Mail servers bind the host's ports: never two at once.
        raise pytest.UsageError("docker tests bind host ports and must not run in parallel (drop -n)")


@pytest.fixture(scope="session")
def docker_session():
    """The Docker engine, this machine's test lock, and a clean slate of `mwtest-*` containers."""
    ok, why = d.available()
    if not ok:
        pytest.skip(f"docker tests skipped: {why}")
    with d.host_lock():
        swept = d.sweep()
        if swept:
            print(f"\nremoved {len(swept)} leftover mwtest-* containers", file=sys.stderr)
        try:
            yield
        finally:
            d.sweep()


@pytest.fixture(scope="session")
def image(docker_session) -> str:
    """The mailwright image: $MAILWRIGHT_IMAGE if present, else one `build/image.py` build per session."""
    tag = os.environ.get("MAILWRIGHT_IMAGE")
    if tag:
        if d.image_exists(tag):
            return tag
        pytest.fail(f"MAILWRIGHT_IMAGE={tag} is not a local image")
    builder = REPO / "build" / "image.py"
    if not builder.exists():
        pytest.skip("build/image.py does not exist yet: no mailwright image to test")
    t0 = time.monotonic()
    p = subprocess.run([vpsmod.PYTHON, str(builder), "--tag", IMAGE_TAG], cwd=REPO,
                       capture_output=True, text=True, timeout=3600)
    if p.returncode != 0:
        pytest.fail(f"image build failed ({p.returncode}) after {time.monotonic() - t0:.0f}s: "
                    f"{vpsmod.PYTHON} build/image.py --tag {IMAGE_TAG}\n"
                    f"stdout:\n{p.stdout[-5000:]}\nstderr:\n{p.stderr[-5000:]}")
    if not d.image_exists(IMAGE_TAG):
        pytest.fail(f"build/image.py exited 0 but there is no {IMAGE_TAG}:\n{p.stdout[-3000:]}")
    return IMAGE_TAG


@pytest.fixture(scope="session")
def tls() -> TestTLS:
    """trustme CA + a server certificate for mail.example.test; `tls.client_context()` trusts only that CA."""
    return TestTLS()


@pytest.fixture(scope="session")
def base_image(docker_session) -> str:
    """The team's Debian 12 base image (build/rootfs.py) or the local fallback."""
    try:
        return vpsmod.base_image()
    except RuntimeError as e:
        pytest.skip(str(e))


@pytest.fixture(scope="session")
def vps_image(base_image, tmp_path_factory) -> str:
    return vpsmod.build_vps_image(tmp_path_factory.mktemp("vps-image"), base_image)


@pytest.fixture(scope="session")
def deploy_py() -> Path:
    p = REPO / "deploy.py"
    if not p.exists():
        pytest.skip("deploy.py does not exist yet: nothing to deploy over SSH or the docker connector")
    return p


@pytest.fixture
def vps(vps_image, tmp_path):
    """A fresh systemd+sshd container (removed afterwards); yields harness.vps.Vps."""
    machine = vpsmod.Vps(image=vps_image, workdir=tmp_path / "vps")
    try:
        machine.start()
        yield machine
    finally:
        machine.remove()


@pytest.fixture
def vps_inventory(vps, tmp_path):
    """A pyinfra inventory file for `vps` (SSH settings only; tests add their data)."""
    return vpsmod.write_inventory(tmp_path / "inventory.py", "127.0.0.1", vps.host_data())
