"""A throw-away PKI for the fake API server, made with the ``openssl`` CLI.

The ``cryptography`` package is not in the virtualenv and OpenSSL 3 is on every Debian machine,
so three ``openssl`` calls per certificate are the cheapest honest way: a CA, a server certificate
for 127.0.0.1/::1/localhost, and client certificates (CN = user, O = group) for client-cert auth.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path


def _openssl(*args: str, cwd: Path) -> None:
    proc = subprocess.run(["openssl", *args], cwd=cwd, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise RuntimeError(f"openssl {' '.join(args[:2])} failed: {proc.stderr.strip()}")


class Pki:
    """CA + server certificate in ``directory`` (created 0700); ``client()`` issues client certs."""

    def __init__(self, directory: Path) -> None:
        self.dir = directory
        self.dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        self.ca_key = self.dir / "ca.key"
        self.ca_cert = self.dir / "ca.crt"
        self.server_key = self.dir / "server.key"
        self.server_cert = self.dir / "server.crt"
        self._serial = 1
        _openssl(
            "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
            "-keyout", self.ca_key.name, "-out", self.ca_cert.name, "-days", "3650",
            "-subj", "/CN=fake-kube-apiserver-ca",
            "-addext", "basicConstraints=critical,CA:TRUE",
            "-addext", "keyUsage=critical,keyCertSign,cRLSign",
            cwd=self.dir,
        )  # fmt: skip
        self._issue(
            "server",
            "/CN=kube-apiserver",
            "subjectAltName=IP:127.0.0.1,IP:::1,DNS:localhost,DNS:kubernetes.default.svc\n"
            "extendedKeyUsage=serverAuth\nkeyUsage=critical,digitalSignature\nbasicConstraints=CA:FALSE\n",
        )

    @property
    def ca_pem(self) -> bytes:
        return self.ca_cert.read_bytes()

    def client(self, user: str, group: str | None = None) -> tuple[Path, Path]:
        """A client certificate (and key) for ``user``, as kube-apiserver maps them: CN = user, O = group."""
        stem = f"client-{user.replace(':', '_')}-{self._serial}"
        subject = f"/CN={user}" + (f"/O={group}" if group else "")
        self._issue(
            stem,
            subject,
            "extendedKeyUsage=clientAuth\nkeyUsage=critical,digitalSignature\nbasicConstraints=CA:FALSE\n",
        )
        return self.dir / f"{stem}.crt", self.dir / f"{stem}.key"

    def _issue(self, stem: str, subject: str, extensions: str) -> None:
        ext = self.dir / f"{stem}.ext"
        ext.write_text(extensions)
        _openssl(
            "req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
            "-keyout", f"{stem}.key", "-out", f"{stem}.csr", "-subj", subject,
            cwd=self.dir,
        )  # fmt: skip
        self._serial += 1
        _openssl(
            "x509", "-req", "-in", f"{stem}.csr", "-CA", self.ca_cert.name, "-CAkey", self.ca_key.name,
            "-set_serial", str(self._serial), "-out", f"{stem}.crt", "-days", "3650", "-extfile", ext.name,
            cwd=self.dir,
        )  # fmt: skip
        os.chmod(self.dir / f"{stem}.key", 0o600)
