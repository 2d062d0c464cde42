"""Fixtures of the CRI tests: one private containerd per mode (thin, kube, thick), shared by the
tests of that mode; each test leaves the node clean, and a failed one is cleaned up after.

containerd that cannot run fails the tests with the reason (scripts/setup.sh installs it; CI
runs as root on Debian 12, where it must run): it is never a silent skip.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.cri.rig import MODES, CriRig
from tests.fakeapi import FakeApiServer
from tests.fakeapi.certs import Pki
from tests.support.containerd import ContainerdUnavailable, build_pause_archive, missing_tools


@pytest.fixture(scope="session")
def pause_archive(tmp_path_factory: pytest.TempPathFactory) -> Path:
    missing = missing_tools()
    if missing:
        pytest.fail(
            f"containerd cannot run here: not installed: {', '.join(missing)} (run scripts/setup.sh)",
            pytrace=False,
        )
    try:
        return build_pause_archive(tmp_path_factory.mktemp("pause"))
    except ContainerdUnavailable as error:
        pytest.fail(f"containerd cannot run here: {error}", pytrace=False)


@pytest.fixture(scope="package", params=MODES)
def cri_rig(
    request: pytest.FixtureRequest,
    tmp_path_factory: pytest.TempPathFactory,
    pause_archive: Path,
    fake_api_pki: Pki,
) -> Iterator[CriRig]:
    mode: str = request.param
    root = tmp_path_factory.mktemp(f"cri-{mode}")
    api = FakeApiServer(root / "api", pki=fake_api_pki).start() if mode != "thin" else None
    rig = CriRig(root, mode, pause_archive=pause_archive, api=api, record=True)
    try:
        try:
            rig.start()
        except (ContainerdUnavailable, TimeoutError) as error:
            pytest.fail(f"containerd cannot run here: {error}", pytrace=False)
        yield rig
    finally:
        rig.cleanup()
        if api is not None:
            api.stop()


@pytest.fixture
def rig(cri_rig: CriRig) -> Iterator[CriRig]:
    """The mode's rig; sandboxes a failed test left are removed so the next test starts clean."""
    yield cri_rig
    assert cri_rig.cri is not None
    if cri_rig.containerd.proc is None:
        cri_rig.containerd.start()
        cri_rig.cri.wait_ready()
    if cri_rig.daemon is not None and cri_rig.daemon.proc is None:
        cri_rig.daemon.start(wait="readyz")
    cri_rig.cri.remove_all()
