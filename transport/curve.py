"""CurveZMQ keys for `transport.secure`: encryption plus authentication of both ends.

Layout of `transport.curve_key_dir` (made by `python -m transport.curve DIR`, the format of
`zmq.auth.create_certificates`):

    server.key, server.key_secret     the gateway's key pair (node 2)
    client.key, client.key_secret     node 1's key pair
    authorized_clients/*.key          public keys the gateway accepts (node 1's is copied there)

Node 2 needs server.key_secret + authorized_clients/; node 1 needs client.key_secret + server.key.
Secret files are written mode 0600 by pyzmq; never commit them.
"""

from __future__ import annotations

import shutil
import sys
from dataclasses import dataclass
from pathlib import Path

import zmq
import zmq.auth

from transport.errors import TransportError

AUTHORIZED_DIR = "authorized_clients"

HANDSHAKE_HINT = "check transport.secure and the keys in transport.curve_key_dir on both nodes"


class CurveKeyError(TransportError):
    """The CurveZMQ key folder is missing a file or holds an unreadable one."""


@dataclass(frozen=True)
class CurveKeys:
    """One side's keys (z85 bytes). `server_public` is set on clients, `authorized_dir` on servers."""

    public: bytes
    secret: bytes
    server_public: bytes | None = None
    authorized_dir: Path | None = None


def _load(path: Path, want_secret: bool) -> tuple[bytes, bytes | None]:
    if not path.is_file():
        raise CurveKeyError(f"CurveZMQ key file {path} does not exist; create the keys with "
                            f"`python -m transport.curve {path.parent}`")
    try:
        public, secret = zmq.auth.load_certificate(str(path))
    except (OSError, ValueError) as exc:
        raise CurveKeyError(f"CurveZMQ key file {path} is unreadable: {exc}") from exc
    if want_secret and not secret:
        raise CurveKeyError(f"{path} holds no secret key")
    return public, secret


def server_keys(key_dir: str | Path) -> CurveKeys:
    d = Path(key_dir)
    public, secret = _load(d / "server.key_secret", True)
    authorized = d / AUTHORIZED_DIR
    if not authorized.is_dir():
        raise CurveKeyError(f"{authorized} does not exist: put the public keys of allowed clients there")
    return CurveKeys(public=public, secret=secret or b"", authorized_dir=authorized)


def client_keys(key_dir: str | Path) -> CurveKeys:
    d = Path(key_dir)
    public, secret = _load(d / "client.key_secret", True)
    server_public, _ = _load(d / "server.key", False)
    return CurveKeys(public=public, secret=secret or b"", server_public=server_public)


def generate_keys(key_dir: str | Path) -> Path:
    """Create a server and a client key pair in `key_dir` and authorize the client."""
    d = Path(key_dir)
    d.mkdir(parents=True, exist_ok=True)
    zmq.auth.create_certificates(str(d), "server")
    client_public, _ = zmq.auth.create_certificates(str(d), "client")
    (d / AUTHORIZED_DIR).mkdir(exist_ok=True)
    shutil.copy(client_public, d / AUTHORIZED_DIR / "client.key")
    return d


def apply_client(sock: zmq.Socket, keys: CurveKeys) -> None:
    sock.curve_publickey = keys.public
    sock.curve_secretkey = keys.secret
    sock.curve_serverkey = keys.server_public


def apply_server(sock: zmq.Socket, keys: CurveKeys) -> None:
    sock.curve_publickey = keys.public
    sock.curve_secretkey = keys.secret
    sock.curve_server = True


if __name__ == "__main__":
    if len(sys.argv) != 2:
        print("usage: python -m transport.curve KEY_DIR", file=sys.stderr)
        raise SystemExit(2)
    print(f"CurveZMQ keys written to {generate_keys(sys.argv[1])}")
