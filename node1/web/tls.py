"""The HTTPS certificate of node 1's web app.

`ensure_certificate(cfg)` returns (cert_path, key_path): the configured `node1.cert_file` /
`node1.key_file`, or — when both are null — a self-signed certificate generated with
`cryptography` on first start into `<paths.var_dir>/tls/` and reused afterwards (regenerated
when unreadable, expiring within RENEW_BEFORE_DAYS, or not covering node1.host).
Browsers need HTTPS for getUserMedia; with a self-signed certificate they show a warning once.

`server_ssl_context(cert, key)` is the TLS policy: TLS 1.2 minimum, the default cipher list.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import logging
import os
import ssl
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from mirror import Config, ConfigError

CERT_NAME = "node1.crt"
KEY_NAME = "node1.key"
VALID_DAYS = 397          # the longest validity browsers accept for a leaf certificate
RENEW_BEFORE_DAYS = 14
MIN_TLS_VERSION = ssl.TLSVersion.TLSv1_2

log = logging.getLogger(__name__)


def ensure_certificate(cfg: Config) -> tuple[Path, Path]:
    """The (certificate, private key) PEM paths node 1 serves with; generates a self-signed pair if needed."""
    n1 = cfg["node1"]
    if n1.get("cert_file"):
        return cfg.path(n1["cert_file"]), cfg.path(n1["key_file"])
    tls_dir = cfg.path(cfg["paths"]["var_dir"]) / "tls"
    cert_path, key_path = tls_dir / CERT_NAME, tls_dir / KEY_NAME
    host = str(n1["host"])
    if _usable(cert_path, key_path, host):
        return cert_path, key_path
    try:
        tls_dir.mkdir(parents=True, exist_ok=True)
        write_self_signed(cert_path, key_path, host)
    except OSError as exc:
        raise ConfigError(f"cannot write the self-signed certificate into {tls_dir}: {exc.strerror}; "
                          "make paths.var_dir writable or set node1.cert_file and node1.key_file") from exc
    log.info("generated a self-signed TLS certificate for %s in %s", host, tls_dir)
    return cert_path, key_path


def _san_for(host: str) -> list[x509.GeneralName]:
    names: list[x509.GeneralName] = [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
                                     x509.IPAddress(ipaddress.ip_address("::1"))]
    try:
        ip = ipaddress.ip_address(host)
        if ip.is_unspecified:
            return names
        if x509.IPAddress(ip) not in names:
            names.append(x509.IPAddress(ip))
    except ValueError:
        if host != "localhost":
            names.append(x509.DNSName(host))
    return names


def write_self_signed(cert_path: Path, key_path: Path, host: str, days: int = VALID_DAYS) -> None:
    """Write an ECDSA P-256 self-signed certificate for `host` (+ localhost, 127.0.0.1, ::1)."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, host),
                      x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Virtual Mirror (self-signed)")])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name).issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=days))
        .add_extension(x509.SubjectAlternativeName(_san_for(host)), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .sign(key, hashes.SHA256())
    )
    key_pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption())
    _write_atomic(key_path, key_pem, mode=0o600)
    _write_atomic(cert_path, cert.public_bytes(serialization.Encoding.PEM), mode=0o644)


def _write_atomic(path: Path, data: bytes, mode: int) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    try:
        os.write(fd, data)
    finally:
        os.close(fd)
    os.replace(tmp, path)


def _usable(cert_path: Path, key_path: Path, host: str) -> bool:
    try:
        cert = x509.load_pem_x509_certificate(cert_path.read_bytes())
        key = serialization.load_pem_private_key(key_path.read_bytes(), password=None)
    except (OSError, ValueError, TypeError):
        return False
    if cert.public_key().public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo) != \
            key.public_key().public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo):
        return False
    if cert.not_valid_after_utc - dt.datetime.now(dt.UTC) < dt.timedelta(days=RENEW_BEFORE_DAYS):
        return False
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return False
    return all(n in san for n in _san_for(host))


def server_ssl_context(cert_path: Path, key_path: Path) -> ssl.SSLContext:
    """Node 1's server-side TLS policy: TLS 1.2 or newer, no compression, server cipher order."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = MIN_TLS_VERSION
    ctx.options |= ssl.OP_NO_COMPRESSION | ssl.OP_CIPHER_SERVER_PREFERENCE
    try:
        ctx.load_cert_chain(str(cert_path), str(key_path))
    except (OSError, ssl.SSLError) as exc:
        raise ConfigError(f"cannot load the TLS certificate {cert_path} / key {key_path}: {exc}; "
                          "check node1.cert_file and node1.key_file (PEM)") from exc
    return ctx
