"""The operator docs keep up with the code: every configuration key the parsers read has a row in
docs/configuration.md, and every metric the daemon exports is named in docs/troubleshooting.md."""

from __future__ import annotations

import re

import pytest

from tests.deploy.manifests import ROOT

SRC = ROOT / "src" / "pymultus"
DOCS = ROOT / "docs"


def _multus_conf_keys() -> set[str]:
    source = (SRC / "config" / "multus.py").read_text()
    keys = set(
        re.findall(r'(?:_str|_path|_bool|_seconds|_str_list|_object)\((?:plugin|doc), "([^"]+)"', source)
    )
    keys |= set(re.findall(r'(?:plugin|doc)\.get\("([^"]+)"', source))
    return keys


def _daemon_keys() -> tuple[set[str], set[str]]:
    source = (SRC / "daemon" / "config.py").read_text()
    top = set(re.findall(r'reader\.\w+\("([^"]+)"', source))
    for group in re.findall(r"for key in \(([^)]*)\)", source):
        top |= set(re.findall(r'"([^"]+)"', group))
    nested = set(re.findall(r'sub\.\w+\("([^"]+)"', source))
    return top, nested


def _table_keys(text: str) -> set[str]:
    """Keys that have their own table row: lines starting with | `key` |."""
    return set(re.findall(r"^\| `([^`]+)` \|", text, flags=re.MULTILINE))


def test_the_key_extraction_still_finds_the_keys() -> None:
    # Guards the tests below: a refactor of the parsers must not make them vacuous.
    assert {"clusterNetwork", "strictCapabilities", "delegateTimeout", "manifestsDir"} <= _multus_conf_keys()
    top, nested = _daemon_keys()
    assert {"socketDir", "connectionLimit", "requestQueueLimit", "namespaceIsolation"} <= top
    assert "certDuration" in nested


def test_every_multus_conf_key_is_documented() -> None:
    documented = _table_keys((DOCS / "configuration.md").read_text())
    missing = sorted(_multus_conf_keys() - documented - {"cni.dev/attachments"})
    assert not missing, f"docs/configuration.md has no row for these Multus conf keys: {missing}"


def test_every_daemon_config_key_is_documented() -> None:
    text = (DOCS / "configuration.md").read_text()
    top, nested = _daemon_keys()
    missing = sorted(top - _table_keys(text))
    assert not missing, f"docs/configuration.md has no row for these daemon-config keys: {missing}"
    unmentioned = sorted(key for key in nested if f"`{key}`" not in text)
    assert not unmentioned, f"docs/configuration.md never mentions: {unmentioned}"


def test_pymultus_only_keys_are_marked() -> None:
    from pymultus.config.multus import PYMULTUS_KEYS

    text = (DOCS / "configuration.md").read_text()
    for key in PYMULTUS_KEYS:
        rows = [line for line in text.splitlines() if line.startswith(f"| `{key}` |")]
        assert rows, key
        assert all("**pymultus.**" in row for row in rows), f"{key} is not marked as pymultus-specific"


def test_every_metric_is_documented() -> None:
    source = (SRC / "daemon" / "metrics.py").read_text()
    names = set(re.findall(r'"(pymultus_[a-z_]+)"', source))
    if not names:
        pytest.fail("no metric names found in pymultus/daemon/metrics.py")
    text = (DOCS / "troubleshooting.md").read_text()
    missing = sorted(name for name in names if f"`{name}" not in text)
    assert not missing, f"docs/troubleshooting.md does not describe: {missing}"


@pytest.mark.parametrize(
    "page",
    [
        "README.md",
        "quickstart.md",
        "configuration.md",
        "annotations.md",
        "troubleshooting.md",
        "migration.md",
        "deployment.md",
    ],
)
def test_relative_links_resolve(page: str) -> None:
    text = (DOCS / page).read_text()
    for target in re.findall(r"\]\(([^)#:]+)(?:#[^)]*)?\)", text):
        assert (DOCS / target).exists(), f"{page} links to {target}, which does not exist"
