"""The built image holds what the manifests run: the `pymultus` command in a venv on Debian's
python3, the self-contained bundle the installer copies to nodes, a non-root default user, the
tag the kustomizations name, and none of the build's extra CA certificates."""

from __future__ import annotations

import pytest

from tests.deploy import manifests as m
from tests.image.archive import BUILD_TIMEOUT, ROOT, ImageArchive

# Root (a private dockerd), like the netns tests; the first test may pay a cold build.
pytestmark = [pytest.mark.netns, pytest.mark.timeout(BUILD_TIMEOUT + 120)]

VENV = "opt/pymultus/venv"
BUNDLE = "opt/pymultus/bundle"


def test_the_image_has_the_tag_both_overlays_deploy(image: ImageArchive) -> None:
    for overlay in ("thin", "thick"):
        for container in m.pod_spec(overlay).get("initContainers", []) + m.pod_spec(overlay)["containers"]:
            assert [container["image"]] == image.tags, f"deploy/{overlay} {container['name']}"


def test_the_default_user_is_unprivileged_and_the_entry_point_is_pymultus(image: ImageArchive) -> None:
    run = image.runtime
    assert run["User"] == "65532:65532"
    assert run["Entrypoint"] == ["pymultus"]
    assert run["Cmd"] == ["--help"]
    env = dict(item.split("=", 1) for item in run["Env"])
    assert env["PATH"].startswith("/opt/pymultus/venv/bin:")
    assert env["PYMULTUS_BUNDLE_DIR"] == "/" + BUNDLE


def test_layers_are_the_base_then_python_and_user_then_venv_then_bundle(image: ImageArchive) -> None:
    assert len(image.layers) == 4
    venv = image.layer_files(2)
    bundle = image.layer_files(3)
    assert all(name.startswith(VENV) or VENV.startswith(name) for name in venv)
    assert all(name.startswith(BUNDLE) or BUNDLE.startswith(name) for name in bundle)


def test_every_source_module_is_in_the_venv_and_in_the_bundle(image: ImageArchive) -> None:
    # A module missing from the wheel's package data would reach nodes otherwise.
    files = image.files()
    sources = {
        str(path.relative_to(ROOT / "src"))
        for path in (ROOT / "src" / "pymultus").rglob("*")
        if path.is_file() and path.suffix in (".py", ".typed", ".json") and "__pycache__" not in path.parts
    }
    site = f"{VENV}/lib/python3.11/site-packages"
    missing_venv = sorted(s for s in sources if f"{site}/{s}" not in files)
    missing_bundle = sorted(s for s in sources if s.endswith(".py") and f"{BUNDLE}/site/{s}" not in files)
    assert not missing_venv, f"not in the image's venv: {missing_venv}"
    assert not missing_bundle, f"not in the image's bundle: {missing_bundle}"


def test_the_venv_runs_on_the_base_images_debian_python(image: ImageArchive) -> None:
    files = image.files()
    # venv/bin/python -> /usr/bin/python (python-is-python3) -> python3 -> python3.11
    assert image.resolve(f"{VENV}/bin/python") == "usr/bin/python3.11"
    assert image.resolve(f"{VENV}/bin/python3") == "usr/bin/python3.11"
    # The thick daemon runs delegates through chroot into the host root.
    assert "usr/sbin/chroot" in files


def test_the_bundle_is_self_contained(image: ImageArchive) -> None:
    files = image.files()
    marker = files.get(f"{BUNDLE}/BUNDLE.json")
    assert marker is not None and marker.isfile()
    assert f"{BUNDLE}/bin/python3.11" in files
    assert f"{BUNDLE}/lib/python3.11/os.py" in files


def test_the_builds_extra_ca_certificates_stay_out_of_the_final_image(image: ImageArchive) -> None:
    # scripts/image.sh passes the host's extra CAs as EXTRA_CA_CERTS (pip needs them here).
    files = image.files()
    local = [
        name
        for name in files
        if name.startswith("usr/local/share/ca-certificates/") and name.endswith(".crt")
    ]
    assert local == []
    bundle = files["etc/ssl/certs/ca-certificates.crt"]
    assert bundle.isfile()
