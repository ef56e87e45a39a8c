"""The integration modules' image: checked against, never built (`make image` builds it)."""

from __future__ import annotations

import os
import shutil
import subprocess

import pytest

IMAGE = os.environ.get("MAILWRIGHT_IMAGE", "mailwright:latest")


def _image_present() -> str | None:
    if not shutil.which("docker"):
        return "docker is not installed"
    p = subprocess.run(["docker", "image", "inspect", IMAGE], capture_output=True, text=True)
    return None if p.returncode == 0 else f"image {IMAGE} is not present (make image builds it)"


@pytest.fixture(scope="module")
def image():
    """`mailwright:latest` (or $MAILWRIGHT_IMAGE); the module is skipped without docker or the image."""
    why = _image_present()
    if why:
        pytest.skip(why)
    return IMAGE
