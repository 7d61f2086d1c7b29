"""What `start_application.sh --containers` runs, worked out from env_config.json (no engine is called).

    HostConfig(path, env)          the keys the launcher needs, with DEPLOYMENT / VM__ overrides
    roles_here(cfg, role)          the containers of this host, in start order, and their network
    plan(cfg, roles, ...)          one ContainerSpec per container: image, env, mounts, ports
    stage_secrets(cfg, dest)       copies of the config and the files it names, owned by the images' user
    check_port_free(key, host, port)

Standard library only (mirror/containers.py, which drives the engine, runs on the system's python3).
"""

from __future__ import annotations

import json
import os
import shutil
import socket
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
IMAGE_PREFIX = "virtual-mirror-"
ROLES = ("node1", "node2", "viton")
CONTAINER_UID = 10001  # the images' user "mirror" (deploy/Containerfile)
APP = "/app"
CONFIG_IN_CONTAINER = "/etc/virtual-mirror/env_config.json"
SECRETS_IN_CONTAINER = "/run/secrets/virtual-mirror"
STOP_TIMEOUT_S = 10
SERVICES = {"node1": 1, "node2": 2, "viton": 1}  # processes per container (torch threads share the CPUs)
# mirror.config.FILE_KEYS: every file or folder a config may name (all secret, or key material).
SECRET_KEYS = (("node1", "cert_file"), ("node1", "key_file"), ("node1", "operator_token_file"),
               ("gvirtus", "token_file"), ("gvirtus", "tls_cert_file"), ("gvirtus", "tls_key_file"),
               ("transport", "curve_key_dir"), ("pool", "registration_token_file"))
# The defaults of mirror.config.DEFAULTS that the launcher reads (a test keeps them equal).
DEFAULTS: dict[str, dict[str, Any]] = {
    "node2": {"bind_host": None, "gvirtus_data_port": 0},
    "viton": {"checkpoint_dir": "models/vitonhd", "placement": "node2", "port": 9557, "engine": "geometric"},
    "paths": {"garment_drop_dir": "garment_photos", "var_dir": "var"},
}


class ContainerError(Exception):
    """A container deployment could not start; the message names what and how to fix it.

    Its own class, not mirror.errors.LaunchError: importing the mirror package needs the venv's
    jsonschema, and this launcher runs on the system's python3.
    """


class HostConfig:
    """The keys the launcher needs from env_config.json, with DEPLOYMENT and VM__ overrides applied
    as mirror.config applies them. The services validate the whole file when they start."""

    def __init__(self, path: Path, env: dict[str, str]) -> None:
        self.path = path
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except OSError as exc:
            raise ContainerError(f"cannot read config file {path}: {exc.strerror}") from exc
        except json.JSONDecodeError as exc:
            raise ContainerError(f"{path} is not valid JSON: {exc.msg} at line {exc.lineno}") from exc
        if not isinstance(data, dict):
            raise ContainerError(f"{path}: the top level must be a JSON object")
        if "DEPLOYMENT" in env:
            data["DEPLOYMENT"] = env["DEPLOYMENT"]
        for name in sorted(env):
            if name.startswith("VM__") and all(name[4:].split("__")):
                *sections, key = name[4:].split("__")
                node = data
                for s in sections:
                    node = node.setdefault(s, {}) if isinstance(node.get(s, {}), dict) else {}
                node[key] = _json_or_text(env[name])
        self.data = data

    @property
    def deployment(self) -> str:
        return str(self.data.get("DEPLOYMENT", "LOCAL"))

    def get(self, section: str, key: str) -> Any:
        value = self.data.get(section, {}).get(key, DEFAULTS.get(section, {}).get(key))
        if value is None and key not in DEFAULTS.get(section, {}):
            raise ContainerError(f"{self.path}: {section}.{key} is missing")
        return value

    def host_path(self, value: str) -> Path:
        """A configured path on this host: absolute as is, else relative to the checkout (as mirror.config)."""
        p = Path(value)
        return p if p.is_absolute() else ROOT / p


def _json_or_text(text: str) -> Any:
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text


@dataclass
class ContainerSpec:
    """One container to run: everything `podman run` / `docker run` is given."""

    role: str
    name: str
    image: str
    network: str                                   # "host" or the deployment's network
    env: dict[str, str] = field(default_factory=dict)
    mounts: list[str] = field(default_factory=list)    # -v values
    publish: list[str] = field(default_factory=list)   # -p values
    aliases: list[str] = field(default_factory=list)
    host_ports: list[tuple[str, str, int]] = field(default_factory=list)  # (config key, host, port) it takes here
    devices: list[str] = field(default_factory=list)

    def run_args(self, engine: str, project: str) -> list[str]:
        args = ["run", "-d", "--name", self.name, "--restart", "unless-stopped",
                "--label", f"io.virtual-mirror.project={project}", "--label", f"io.virtual-mirror.role={self.role}",
                "--network", self.network, "--stop-timeout", str(STOP_TIMEOUT_S)]
        for alias in self.aliases:
            args += ["--network-alias", alias]
        for p in self.publish:
            args += ["-p", p]
        for m in self.mounts:
            args += ["-v", m]
        for d in self.devices:
            args += (["--gpus", "all"] if d == "gpu" and engine == "docker" else
                     ["--device", "nvidia.com/gpu=all"] if d == "gpu" else ["--device", d])
        for k, v in sorted(self.env.items()):
            args += ["-e", f"{k}={v}"]
        return [*args, self.image]


def roles_here(cfg: HostConfig, role: str | None) -> tuple[list[str], bool]:
    """(the roles' containers in start order, whether they share a private network)."""
    if role in (None, "all"):
        if cfg.deployment != "LOCAL" and role is None:
            raise ContainerError("DEPLOYMENT=DISTRIBUTED: say which role this host runs: --role node1|node2|viton")
        return ["viton", "node2", "node1"], True
    if cfg.deployment == "LOCAL":
        raise ContainerError(f"--role {role} is for DEPLOYMENT=DISTRIBUTED hosts; with LOCAL every role runs "
                             "here: drop --role")
    viton_here = cfg.get("viton", "placement") == role
    return (["viton", role] if viton_here else [role]) if role != "viton" else ["viton"], False


def plan(cfg: HostConfig, roles: list[str], *, private_net: bool, project: str, tag: str,
         secrets: tuple[dict[str, str], list[str]], env: dict[str, str]) -> list[ContainerSpec]:
    """The containers for `roles` (pure: no engine is called).

    Args:
        secrets: (VM__ overrides naming the mounted copies, their -v mounts), from stage_secrets.
        env: environment every container gets (the caller's VM__ / DEPLOYMENT / token passthrough).
    """
    common = {**env, **secrets[0], "VM_CONFIG": CONFIG_IN_CONTAINER,
              "VM_HOST_PROCESSES": str(sum(SERVICES[r] for r in roles)),
              "VM__paths__var_dir": f"{APP}/var", "VM__paths__catalog_dir": f"{APP}/var/catalog",
              "VM__paths__models_dir": f"{APP}/models", "VM__paths__garment_drop_dir": f"{APP}/garment_photos"}
    mounts = [*secrets[1], f"{project}-var:{APP}/var"]
    drop = cfg.host_path(str(cfg.get("paths", "garment_drop_dir")))
    if drop.is_dir():
        mounts.append(f"{drop}:{APP}/garment_photos")
    gpu = ["gpu"] if Path("/dev/nvidiactl").exists() and os.environ.get("VM_CONTAINER_GPUS", "all") != "none" else []
    rdma = ["/dev/infiniband"] if not private_net and Path("/dev/infiniband").is_dir() else []
    specs = []
    for role in roles:
        spec = ContainerSpec(role, f"{project}-{role}", f"{IMAGE_PREFIX}{role}:{tag}",
                             f"{project}-net" if private_net else "host", env=dict(common), mounts=list(mounts),
                             devices={"node1": rdma, "node2": gpu + rdma, "viton": gpu}[role])
        (_private_net_role if private_net else _host_net_role)(cfg, spec)
        if role == "viton":
            ckpt = cfg.host_path(str(cfg.get("viton", "checkpoint_dir")))
            if ckpt.is_dir():
                spec.mounts.append(f"{ckpt}:{APP}/models/vitonhd:ro")
            spec.env["VM__viton__checkpoint_dir"] = f"{APP}/models/vitonhd"
        specs.append(spec)
    return specs


def _private_net_role(cfg: HostConfig, spec: ContainerSpec) -> None:
    """LOCAL: the services bind every address of their container and find each other by name;
    only node 1's HTTPS port and node 2's health port are published, on the configured hosts."""
    viton_port = int(cfg.get("viton", "port"))
    if spec.role == "viton":
        spec.env["VM__viton__endpoint"] = f"tcp://0.0.0.0:{viton_port}"
        spec.aliases = ["viton"]
    elif spec.role == "node2":
        host = str(cfg.get("node2", "bind_host") or cfg.get("node2", "host"))
        port = int(cfg.get("node2", "health_port"))
        spec.env.update({"VM__node2__bind_host": "0.0.0.0", "VM__viton__endpoint": f"tcp://viton:{viton_port}"})
        spec.aliases = ["node2"]
        spec.publish = [f"{publish_host(host)}:{port}:{port}"]
        spec.host_ports = [("node2.health_port", host, port)]
    else:
        host, port = str(cfg.get("node1", "host")), int(cfg.get("node1", "https_port"))
        spec.env.update({"VM__node1__host": "0.0.0.0", "VM__node2__host": "node2"})
        spec.publish = [f"{publish_host(host)}:{port}:{port}"]
        spec.host_ports = [("node1.https_port", host, port)]


def _host_net_role(cfg: HostConfig, spec: ContainerSpec) -> None:
    """DISTRIBUTED: the host's network and the configured addresses, as processes would have them."""
    n2_bind = str(cfg.get("node2", "bind_host") or cfg.get("node2", "host"))
    if spec.role == "viton":
        node = cfg.get("viton", "placement")
        host = n2_bind if node == "node2" else str(cfg.get("node1", "host"))
        spec.host_ports = [("viton.port", host, int(cfg.get("viton", "port")))]
    elif spec.role == "node2":
        spec.host_ports = [(f"node2.{k}", n2_bind, int(cfg.get("node2", k)))
                           for k in ("gvirtus_port", "gateway_port", "health_port")]
    else:
        spec.host_ports = [("node1.https_port", str(cfg.get("node1", "host")), int(cfg.get("node1", "https_port")))]


def publish_host(host: str) -> str:
    """`host` as the address part of -p HOST:PORT:PORT or a URL (IPv6 literals in brackets)."""
    return f"[{host}]" if ":" in host else host


def check_port_free(key: str, host: str, port: int) -> None:
    """ContainerError when host:port cannot be bound here (as mirror.launch.check_port_free, which this
    module cannot import: it runs on the system's python3 without the mirror package)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError as exc:
            raise ContainerError(f"port {port} ({key}) on {host} is not available: {exc.strerror}; stop the "
                                 f"process using it or change {key} in env_config.json") from exc


def stage_secrets(cfg: HostConfig, dest: Path) -> tuple[dict[str, str], list[str]]:
    """Copy the config and every file it names into `dest`, owned by the images' user, read-only.

    Returns (VM__ overrides pointing at the copies, -v mounts). The originals stay untouched.
    """
    if os.geteuid() != 0:
        raise ContainerError("start_application.sh --containers runs as root: the mounted copies of the "
                             f"secrets must belong to the images' user (uid {CONTAINER_UID})")
    overrides: dict[str, str] = {}
    mounts: list[str] = []
    dest.mkdir(mode=0o700, parents=True, exist_ok=True)
    for section, key in SECRET_KEYS:
        value = cfg.data.get(section, {}).get(key)
        if not value:
            continue
        src = cfg.host_path(str(value))
        if not src.exists():
            raise ContainerError(f"{cfg.path}: {section}.{key} = {json.dumps(value)}: no such file ({src}); "
                                 "create it (scripts/bootstrap.sh makes the tokens) or set the key to null")
        copy = dest / f"{section}.{key}"
        if src.is_dir():
            shutil.copytree(src, copy)
        else:
            shutil.copyfile(src, copy)
        _own(copy)
        overrides[f"VM__{section}__{key}"] = f"{SECRETS_IN_CONTAINER}/{copy.name}"
        mounts.append(f"{copy}:{SECRETS_IN_CONTAINER}/{copy.name}:ro")
    conf = dest / "env_config.json"
    shutil.copyfile(cfg.path, conf)
    _own(conf)
    mounts.append(f"{conf}:{CONFIG_IN_CONTAINER}:ro")
    return overrides, mounts


def _own(path: Path) -> None:
    for p in [path, *(path.rglob("*") if path.is_dir() else [])]:
        os.chown(p, CONTAINER_UID, CONTAINER_UID)
        os.chmod(p, 0o500 if p.is_dir() else 0o400)
