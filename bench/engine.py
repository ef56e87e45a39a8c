"""The Docker Engine and the host: client, the image under test, leftovers,
and the host lock shared with the test suite."""
from __future__ import annotations

import contextlib
import os

from bench.common import BenchError, log
from mailwright.hostlock import LOCK_PATH, host_lock as _host_lock

CONTAINER_PREFIX = "mwbench-"
LABEL = "mailwright.bench"

__all__ = ["CONTAINER_PREFIX", "LABEL", "LOCK_PATH", "docker_client", "get_image", "hold_image",
           "host_lock", "remove_stale_containers"]


def docker_client():
    try:
        import docker
    except ImportError:
        raise BenchError("the docker SDK is missing: run `make venv` and use .venv/bin/python")
    try:
        client = docker.from_env(timeout=120)
        client.ping()
    except Exception as e:
        raise BenchError(f"cannot reach the Docker engine ({e}); `make host` installs and starts it")
    return client


def get_image(client, name: str):
    import docker
    try:
        return client.images.get(name)
    except docker.errors.ImageNotFound:
        raise BenchError(f"image {name} not found: build it with `make image` (or pass --image)")


@contextlib.contextmanager
def hold_image(image):
    """A tag of our own for the image under test.

    `build/image.py` removes the image a tag named before (`docker rmi <id>`,
    no force): a second tag makes that fail, so a colleague's `make image`
    cannot delete the image between two of our runs.
    """
    ref = f"mwbench-subject:{os.getpid()}"
    image.tag("mwbench-subject", str(os.getpid()))
    try:
        yield
    finally:
        with contextlib.suppress(Exception):
            image.client.images.remove(ref)


def remove_stale_containers(client) -> None:
    """Leftovers of an interrupted bench hold no ports once exited; remove them."""
    for c in client.containers.list(all=True, filters={"label": LABEL}):
        if c.status != "running":
            log(f"removing stale {c.name}")
            c.remove(force=True, v=True)


def host_lock(wait: float):
    """The test suite's lock (mailwright.hostlock), held for one container's
    life, so a test session can run between two runs."""
    return _host_lock(wait, on_wait=log, error=BenchError)
