"""Thick mode under containerd: the daemon SIGKILLed with sandboxes running. containerd's DELs
then reach a shim with no daemon behind it; the shim tears the pods down from the on-disk cache."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.cri.rig import CriRig
from tests.fakeapi import FakeApiServer
from tests.fakeapi.certs import Pki

pytestmark = pytest.mark.netns


@pytest.fixture(scope="module")
def thick(
    tmp_path_factory: pytest.TempPathFactory, pause_archive: Path, fake_api_pki: Pki
) -> Iterator[CriRig]:
    root = tmp_path_factory.mktemp("cri-thick-kill")
    api = FakeApiServer(root / "api", pki=fake_api_pki).start()
    rig = CriRig(root, "thick", pause_archive=pause_archive, api=api, record=True)
    try:
        rig.start()
        yield rig
    finally:
        rig.cleanup()
        api.stop()


def test_daemon_killed_with_sandboxes_running_then_stop_and_remove(thick: CriRig) -> None:
    nads = [thick.network(), thick.network()]
    sandboxes = [thick.run(thick.pod(nads)) for _ in range(3)]
    assert thick.daemon is not None
    thick.daemon.kill()
    for sandbox in sandboxes:
        thick.stop_remove(sandbox.id)
    assert thick.nothing_left() == {}
    # A new daemon picks up where the old one was, and new sandboxes get every network again.
    thick.daemon.start(wait="readyz")
    sandbox = thick.run(thick.pod(nads))
    assert set(sandbox.links()) == {"lo", "eth0", "net1", "net2"}
    thick.stop_remove(sandbox.id)
    assert thick.nothing_left() == {}
