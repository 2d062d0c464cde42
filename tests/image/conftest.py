"""The image, built once per session (scripts/image.sh reuses its cache when nothing changed)."""

from __future__ import annotations

import pytest

from tests.image.archive import ImageArchive, build
from tests.support.netns import is_root


@pytest.fixture(scope="session")
def image() -> ImageArchive:
    if not is_root():
        pytest.fail("building the image needs root (a private dockerd; CI runs as root)", pytrace=False)
    return build()
