"""The log format shared by the CNI executables and the daemon (``pymultus.logfmt``)."""

from __future__ import annotations

import logging
import re

import pytest

from pymultus import logfmt
from pymultus.daemon import logs

LINE = re.compile(
    r"ts=\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z level=(\w+) component=([\w-]+) pid=\d+ (msg=.*)"
)


@pytest.mark.parametrize(
    ("value", "written"),
    [
        ("net1", "net1"),
        ("default/web", "default/web"),
        ("", '""'),
        ("two words", '"two words"'),
        ('say "hi"', '"say \\"hi\\""'),
        ("a=b", '"a=b"'),
        ("line\nbreak\ttab", '"line\\nbreak\\ttab"'),
        ("back\\slash", '"back\\\\slash"'),
        (7, "7"),
    ],
)
def test_values_are_bare_or_quoted_and_always_one_line(value: object, written: str) -> None:
    assert logfmt.quote(value) == written


def test_fragment_leaves_out_empty_fields() -> None:
    fields = [("pod", "ns/p"), ("ifname", ""), ("code", None), ("ms", "1.5")]
    assert logfmt.fragment("ADD done", fields) == 'msg="ADD done" pod=ns/p ms=1.5'


def test_line_has_utc_timestamp_level_component_pid() -> None:
    text = logfmt.line("error", "multus", 42, "plain text", 1_800_000_000.25)
    assert text == 'ts=2027-01-15T08:00:00.250Z level=error component=multus pid=42 msg="plain text"\n'
    assert logfmt.line("debug", "multus", 1, "msg=x a=b", 0.0).endswith(" msg=x a=b\n")


@pytest.mark.parametrize(
    ("configured", "shown"),
    [
        ("panic", []),
        ("error", ["error", "warning"]),
        ("verbose", ["error", "warning", "info", "verbose"]),
        ("debug", ["error", "warning", "info", "verbose", "debug"]),
    ],
)
def test_levels(configured: str, shown: list[str]) -> None:
    threshold = logfmt.threshold(configured)
    levels = ["error", "warning", "info", "verbose", "debug"]
    assert [level for level in levels if logfmt.enabled(level, threshold)] == shown


def test_secrets_are_redacted_at_any_depth() -> None:
    conf = {
        "type": "sriov",
        "token": "abc",
        "ipam": {"type": "whereabouts", "kubernetes": {"kubeconfig": "/etc/k", "password": "p"}},
        "plugins": [{"apiKey": "k", "client-key-data": "Zm9v", "auth": {"secret": {"x": 1}}}],
    }
    assert logfmt.redact(conf) == {
        "type": "sriov",
        "token": "[redacted]",
        "ipam": {"type": "whereabouts", "kubernetes": {"kubeconfig": "/etc/k", "password": "[redacted]"}},
        "plugins": [{"apiKey": "[redacted]", "client-key-data": "[redacted]", "auth": {"secret": {"x": 1}}}],
    }


def test_the_daemon_writes_the_same_format() -> None:
    formatter = logs.LogfmtFormatter()
    record = logging.LogRecord(
        "pymultus.daemon.service", logging.INFO, __file__, 1, "%s done", ("ADD",), None
    )
    with logs.request_context("ADD", "default/web", "abc123"):
        text = formatter.format(record)
    match = LINE.fullmatch(text)
    assert match is not None, text
    assert match.groups()[:2] == ("verbose", "daemon")
    assert (
        match.group(3)
        == 'msg="ADD done" logger=pymultus.daemon.service command=ADD pod=default/web containerID=abc123'
    )

    engine = logging.LogRecord(
        "pymultus.attach", logging.ERROR, __file__, 1, "%s", ('msg="ADD failed" code=7',), None
    )
    with logs.request_context("ADD", "default/web", "abc123"):
        match = LINE.fullmatch(formatter.format(engine))
    assert match is not None
    # The engine's fragment already names the pod and container: no context fields are added.
    assert match.groups() == ("error", "daemon", 'msg="ADD failed" code=7')
