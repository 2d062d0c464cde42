"""The daemon's configuration manager: ``00-multus.conf[list]`` and the readiness-indicator file.

``multusConfigFile: auto`` — find the primary CNI conf in ``multusAutoconfigDir`` (the lexically
first ``.conf``/``.conflist``/``.json`` that is not a Multus conf, or ``multusMasterCNI``), write
``<cniConfigDir>/00-multus.conf[list]`` atomically with ``type: multus-shim``, then poll every
second (content hashes, no inotify dependency) and regenerate when the primary's content changes
or a different file now sorts first (Go Multus fixes the choice at start: multus#1499).
``multusConfigFile: <path>`` — copy that file into ``cniConfigDir`` once, like Go Multus.

Deliberate differences from Go Multus, and why:

* The generated conf is **kept** on shutdown (DESIGN item 9, multus#1527): removing it makes the
  runtime fall back to the primary conf, and pods created in that window silently lack their
  secondary networks. With the conf kept, a shim started while the daemon is down waits for
  ``/readyz`` and fails with code 11, so the runtime retries the sandbox later.
* Removal of the readiness-indicator file does **not** delete the conf or exit (Go Multus deletes
  the conf and exits with code 2). It makes ``/readyz`` fail until the file is back: shims wait
  and then fail with code 11 (try again later) instead of pods being created without Multus.
  DEL keeps working throughout. The same holds while the primary conf is missing.
* We never wait 120 s and exit when no primary exists yet: the daemon serves ``/healthz``, reports
  not-ready, and writes the conf as soon as the primary appears.
"""

from __future__ import annotations

import hashlib
import logging
import os
import threading

from pymultus import jsonio
from pymultus.config import generate
from pymultus.daemon.config import DaemonConfig
from pymultus.errors import InvalidConfig, MultusError
from pymultus.fileio import read_file

log = logging.getLogger("pymultus.daemon.autoconf")

POLL_INTERVAL = 1.0


def _digest(path: str) -> str | None:
    try:
        return hashlib.sha256(read_file(path)).hexdigest()
    except OSError:
        return None


class ConfigManager:
    def __init__(self, config: DaemonConfig, *, poll_interval: float = POLL_INTERVAL) -> None:
        self.config = config
        self.poll_interval = poll_interval
        self.primary: str | None = None
        self.written: str | None = None  # path of the conf we wrote
        self.generations = 0  # how many times the conf was (re)written
        self.last_error = ""
        self._primary_digest: str | None = None
        self._conf_ok = threading.Event()
        self._indicator_ok = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        if not config.readiness_indicator_file:
            self._indicator_ok.set()

    # -- readiness ---------------------------------------------------------------------------

    @property
    def ready(self) -> bool:
        return self._conf_ok.is_set() and self._indicator_ok.is_set()

    def not_ready_reason(self) -> str:
        if not self._indicator_ok.is_set():
            return f"readiness indicator file {self.config.readiness_indicator_file} does not exist"
        if not self._conf_ok.is_set():
            return self.last_error or "the multus configuration has not been written yet"
        return ""

    # -- running -----------------------------------------------------------------------------

    def start(self) -> None:
        """Do one pass now (so a present primary is wrapped before we report ready), then poll."""
        self.poll_once()
        self._thread = threading.Thread(target=self._loop, name="config-manager", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()  # the generated conf stays in place on purpose (see the module doc)

    def _loop(self) -> None:
        while not self._stop.wait(self.poll_interval):
            try:
                self.poll_once()
            except Exception:
                log.exception("configuration manager pass failed")

    def poll_once(self) -> None:
        self._check_indicator()
        if self.config.auto:
            self._check_primary()
        elif not self._conf_ok.is_set():
            self._copy_user_conf()

    def _check_indicator(self) -> None:
        path = self.config.readiness_indicator_file
        if not path:
            return
        present = os.path.exists(path)
        if present and not self._indicator_ok.is_set():
            log.info("readiness indicator file %s exists: the default network is ready", path)
            self._indicator_ok.set()
        elif not present and self._indicator_ok.is_set():
            log.warning(
                "readiness indicator file %s disappeared: reporting not ready (00-multus.conf kept)", path
            )
            self._indicator_ok.clear()

    def _check_primary(self) -> None:
        conf = self.config
        try:
            primary = generate.find_primary_conf(
                conf.multus_autoconfig_dir, master_name=conf.multus_master_cni or None
            )
        except MultusError as exc:
            self._fail(str(exc))
            return
        if primary is None:
            where = conf.multus_master_cni or "a .conf/.conflist file"
            self._fail(f"waiting for the primary CNI configuration ({where}) in {conf.multus_autoconfig_dir}")
            return
        digest = _digest(primary)
        if primary == self.primary and digest == self._primary_digest and self._conf_ok.is_set():
            return
        if primary != self.primary:
            log.info("primary CNI configuration is %s", primary)
        try:
            self._generate(primary)
        except MultusError as exc:
            self._fail(f"cannot wrap the primary CNI configuration {primary}: {exc}")
            # Remember the content so a broken primary is reported once, not every second.
            self.primary, self._primary_digest = primary, digest
            return
        self.primary, self._primary_digest = primary, digest
        self.last_error = ""
        self._conf_ok.set()

    def _generate(self, primary: str) -> None:
        conf = self.config
        if conf.force_cni_version:
            _force_cni_version(primary, conf.cni_version)
        options = conf.generator_options()
        primary_version = _primary_version(primary)
        if conf.cni_version and primary_version:
            _check_version_compatibility(conf.cni_version, primary_version, primary)
        # Like Go Multus thick mode, our conf carries the daemon's cniVersion even when the
        # primary's differs (the generator's forceCNIVersion means exactly "use cniVersion").
        options["forceCNIVersion"] = True
        options["socketDir"] = conf.socket_dir  # the shim's daemonSocketDir unless set
        name, data = generate.build_multus_conf(primary, plugin_type="multus-shim", options=options)
        target = os.path.join(conf.cni_config_dir, name)
        changed = generate.write_atomically(target, data, mode=0o600)
        # A stale conf of ours under the other name would shadow or duplicate the new one
        # (00-multus.conf sorts before 00-multus.conflist): remove it.
        for other in generate.OWN_NAMES:
            stale = os.path.join(conf.cni_config_dir, other)
            if other != name and os.path.exists(stale):
                log.info("removing stale %s", stale)
                os.unlink(stale)
        self.written = target
        if changed:
            self.generations += 1
            log.info("wrote %s wrapping %s", target, primary)

    def _copy_user_conf(self) -> None:
        source = self.config.multus_config_file
        target = os.path.join(self.config.cni_config_dir, os.path.basename(source))
        try:
            data = read_file(source)
            jsonio.loads_object(data, what=f"multusConfigFile {source}")
            if os.path.abspath(source) != os.path.abspath(target):
                os.makedirs(self.config.cni_config_dir, exist_ok=True)
                generate.write_atomically(target, data, mode=0o600)
        except (OSError, MultusError) as exc:
            self._fail(f"cannot copy multusConfigFile {source} to {target}: {exc}")
            return
        self.written = target
        self.generations += 1
        self.last_error = ""
        self._conf_ok.set()
        log.info("copied %s to %s", source, target)

    def _fail(self, message: str) -> None:
        if message != self.last_error:
            log.warning("%s", message)
        self.last_error = message
        if self.config.auto:
            # Our conf (if any) stays: requests keep their clusterNetwork path and fail clearly.
            self._conf_ok.clear()


def _primary_version(path: str) -> str:
    try:
        doc = jsonio.loads_object(read_file(path))
    except (OSError, MultusError):
        return ""
    version = doc.get("cniVersion")
    return version if isinstance(version, str) else ""


def _check_version_compatibility(ours: str, primary_version: str, primary: str) -> None:
    """Go Multus's CheckVersionCompatibility: a >= 0.4.0 Multus cannot wrap a < 0.4.0 delegate."""
    if generate.parse_version(ours) >= (0, 4, 0) > generate.parse_version(primary_version):
        raise InvalidConfig(
            f"cniVersion {ours} of the daemon configuration needs a primary CNI conf of at least 0.4.0; "
            f"{primary} has {primary_version}"
        )


def _force_cni_version(path: str, version: str) -> None:
    """``forceCNIVersion``: rewrite the primary conf on disk with ``version`` (kind e2e only)."""
    try:
        doc = jsonio.loads_object(read_file(path))
    except (OSError, MultusError):
        return
    if doc.get("cniVersion") == version:
        return
    doc["cniVersion"] = version
    mode = os.stat(path).st_mode & 0o777
    generate.write_atomically(path, jsonio.dumpb(doc), mode=mode)
    log.warning("forceCNIVersion: rewrote %s with cniVersion %s", path, version)
