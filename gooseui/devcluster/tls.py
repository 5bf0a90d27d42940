"""A private CA and a serving certificate for the simulated API server.

kubectl (client-go) sends credentials only over TLS: with an `http://` server in the
kubeconfig it drops the bearer token. So the simulator serves HTTPS with a
certificate from its own CA, whose PEM goes into the kubeconfig as
`certificate-authority-data`, exactly like a kind or k3d cluster. The files are made
with the `openssl` command (present wherever Debian's ca-certificates is) once per
data directory and reused.
"""

from __future__ import annotations

import ipaddress
import shutil
import ssl
import subprocess
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Certificates:
    ca: Path
    cert: Path
    key: Path

    def server_context(self) -> ssl.SSLContext:
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(self.cert, self.key)
        return context

    def client_context(self) -> ssl.SSLContext:
        """An SSL context that trusts the simulator's CA (for tests and tools)."""
        return ssl.create_default_context(cafile=str(self.ca))


def _san(host: str) -> str:
    names = {"DNS:localhost", "IP:127.0.0.1"}
    try:
        ipaddress.ip_address(host)
        names.add(f"IP:{host}")
    except ValueError:
        names.add(f"DNS:{host}")
    return ",".join(sorted(names))


def _run(*args: str) -> None:
    result = subprocess.run(["openssl", *args], capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise RuntimeError(f"openssl {args[0]} failed: {result.stderr.strip()}")


def ensure_certificates(directory: Path, host: str = "127.0.0.1") -> Certificates:
    """Create (once) a CA and a serving certificate for `host` under `directory`.

    Blocking (runs `openssl`): call it from a thread when an event loop is running.
    """
    directory.mkdir(parents=True, exist_ok=True)
    certs = Certificates(directory / "ca.crt", directory / "server.crt", directory / "server.key")
    marker = directory / "server.san"
    san = _san(host)
    if certs.ca.exists() and certs.cert.exists() and certs.key.exists() and marker.exists():
        if marker.read_text() == san:
            return certs
    if shutil.which("openssl") is None:
        raise RuntimeError(
            "the simulated cluster needs the `openssl` command to make its TLS certificate"
        )
    ca_key = directory / "ca.key"
    csr = directory / "server.csr"
    ext = directory / "server.ext"
    _run("ecparam", "-name", "prime256v1", "-genkey", "-noout", "-out", str(ca_key))
    _run(
        "req",
        "-x509",
        "-new",
        "-key",
        str(ca_key),
        "-sha256",
        "-days",
        "3650",
        "-subj",
        "/CN=gooseui-simulated-ca",
        "-out",
        str(certs.ca),
        "-addext",
        "basicConstraints=critical,CA:TRUE",
        "-addext",
        "keyUsage=critical,keyCertSign,cRLSign,digitalSignature",
        "-addext",
        "subjectKeyIdentifier=hash",
    )
    _run("ecparam", "-name", "prime256v1", "-genkey", "-noout", "-out", str(certs.key))
    _run(
        "req",
        "-new",
        "-key",
        str(certs.key),
        "-subj",
        "/CN=gooseui-simulated-apiserver",
        "-out",
        str(csr),
    )
    ext.write_text(
        "basicConstraints=critical,CA:FALSE\n"
        "keyUsage=critical,digitalSignature,keyEncipherment\n"
        "extendedKeyUsage=serverAuth\n"
        "subjectKeyIdentifier=hash\n"
        "authorityKeyIdentifier=keyid,issuer\n"
        f"subjectAltName={san}\n"
    )
    _run(
        "x509",
        "-req",
        "-in",
        str(csr),
        "-CA",
        str(certs.ca),
        "-CAkey",
        str(ca_key),
        "-CAcreateserial",
        "-days",
        "3650",
        "-sha256",
        "-extfile",
        str(ext),
        "-out",
        str(certs.cert),
    )
    for leftover in (csr, ext, directory / "ca.srl"):
        leftover.unlink(missing_ok=True)
    for private in (ca_key, certs.key):
        private.chmod(0o600)
    marker.write_text(san)
    return certs
