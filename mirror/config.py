"""env_config.json: load, apply environment overrides, validate, resolve paths and secrets.

One file configures both nodes. It is validated against `config/env_config.schema.json`
with jsonschema, then checked for things a schema cannot see (files that must exist, ports
that must differ). Any problem raises ONE `ConfigError` naming the key and the value.

Environment overrides (documented in the README):
    VM_CONFIG=path                 use another config file
    DEPLOYMENT=LOCAL|DISTRIBUTED   the deployment mode
    VM__section__key=value         any key; `value` is parsed as JSON when it parses
                                   (numbers, true/false, null), else taken as a string.
                                   Nested keys chain: VM__transport__rdma__gid_index=3
Secrets are never in the file: `*_token_file` names a file, or the token comes from
VM_GVIRTUS_TOKEN / VM_OPERATOR_TOKEN.
"""

from __future__ import annotations

import copy
import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import jsonschema

from mirror.errors import ConfigError

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_CONFIG_PATH = ROOT / "env_config.json"
SCHEMA_PATH = ROOT / "config" / "env_config.schema.json"
ENV_PREFIX = "VM__"

# Keys whose (non-null) value names a file or folder that must exist.
FILE_KEYS = (
    ("node1", "cert_file"), ("node1", "key_file"), ("node1", "operator_token_file"),
    ("gvirtus", "token_file"), ("gvirtus", "tls_cert_file"), ("gvirtus", "tls_key_file"),
    ("transport", "curve_key_dir"), ("pool", "registration_token_file"),
)

DEFAULTS: dict[str, Any] = {
    "node1": {"cert_file": None, "key_file": None, "workers": 2, "operator_token_file": None,
              "preprocess_device": "remote", "store": "memory", "web_processes": 1,
              "redis": {"unix_socket": None, "host": None, "port": None, "managed": True,
                        "key_prefix": "vm:", "maxmemory_mb": 512}},
    "node2": {"gvirtus_data_port": 0, "name": None},
    "pool": {"members": [], "dns": None, "registration_token_file": None, "health_interval_s": 1.0,
             "heartbeat_timeout_s": 6.0},
    "transport": {"secure": False, "curve_key_dir": None, "max_message_mb": 256,
                  "rdma": {"device": None, "port": 1, "gid_index": 0, "rdma_port": 9560,
                           "connect_timeout_s": 2.0}},
    "gvirtus": {"secure": False, "token_file": None, "tls_cert_file": None, "tls_key_file": None,
                "device": "auto", "session_quota_mb": 4096, "max_message_mb": 256},
    "viton": {"checkpoint_dir": "models/vitonhd", "placement": "node2", "endpoint": None,
              "port": 9557, "device": "auto"},
    "limits": {"upload_max_mb": 10, "image_max_side": 4096, "request_timeout_s": 30,
               "result_ttl_s": 600, "rate_limit_per_min": 120},
    "paths": {"models_dir": "models", "catalog_dir": "var/catalog",
              "garment_drop_dir": "garment_photos", "var_dir": "var"},
}


def _merge(base: dict, over: Mapping) -> dict:
    out = copy.deepcopy(base)
    for k, v in over.items():
        if isinstance(v, Mapping) and isinstance(out.get(k), dict):
            out[k] = _merge(out[k], v)
        else:
            out[k] = copy.deepcopy(v)
    return out


def _parse_env_value(text: str) -> Any:
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text


def _apply_env(raw: dict, env: Mapping[str, str]) -> dict:
    out = copy.deepcopy(raw)
    if "DEPLOYMENT" in env:
        out["DEPLOYMENT"] = env["DEPLOYMENT"]
    for name in sorted(env):
        if not name.startswith(ENV_PREFIX):
            continue
        keys = name[len(ENV_PREFIX):].split("__")
        if not all(keys):
            raise ConfigError(f"environment override {name!r} is malformed; use VM__section__key=value")
        node = out
        for k in keys[:-1]:
            child = node.setdefault(k, {})
            if not isinstance(child, dict):
                raise ConfigError(f"environment override {name}: {'.'.join(keys[:-1])} is not a section")
            node = child
        node[keys[-1]] = _parse_env_value(env[name])
    return out


def _key_path(error: jsonschema.ValidationError) -> str:
    return ".".join(str(p) for p in error.absolute_path) or "(top level)"


def _format_schema_error(error: jsonschema.ValidationError, source: str) -> str:
    where = _key_path(error)
    if error.validator == "additionalProperties":
        extra = sorted(set(error.instance) - set(error.schema.get("properties", {})))
        allowed = ", ".join(sorted(error.schema.get("properties", {})))
        prefix = "" if where == "(top level)" else where + "."
        return (f"{source}: unknown key {prefix}{extra[0]} = {json.dumps(error.instance[extra[0]])}; "
                f"allowed keys here: {allowed}")
    if error.validator == "required":
        return f"{source}: {where}: {error.message}"
    return f"{source}: {where} = {json.dumps(error.instance)} is invalid: {error.message}"


class Config:
    """A validated configuration. Read sections with `cfg["node2"]["gvirtus_port"]`."""

    def __init__(self, data: dict, source: str, root: Path = ROOT) -> None:
        self._data = data
        self.source = source
        self.root = root

    def __getitem__(self, key: str) -> Any:
        return self._data[key]

    @property
    def deployment(self) -> str:
        return str(self._data["DEPLOYMENT"])

    def as_dict(self) -> dict:
        return copy.deepcopy(self._data)

    def path(self, value: str | os.PathLike[str]) -> Path:
        """Resolve a configured path: absolute as is, relative to the repository root."""
        p = Path(value)
        return p if p.is_absolute() else self.root / p

    def secret(self, section: str, key: str, env_var: str) -> str | None:
        """A token: from the file named by `section.key`, else from `env_var`, else None."""
        name = self._data[section].get(key)
        if name:
            text = self.path(name).read_text(encoding="utf-8").strip()
            if not text:
                raise ConfigError(f"{self.source}: {section}.{key} = {name!r} names an empty file")
            return text
        return os.environ.get(env_var) or None


def validate(data: dict, source: str = "env_config.json", root: Path = ROOT) -> Config:
    """Validate a raw config dict (after overrides) and return a `Config`.

    Raises:
        ConfigError: the first problem found, naming the key and its value.
    """
    with open(SCHEMA_PATH, encoding="utf-8") as f:
        schema = json.load(f)
    validator = jsonschema.Draft202012Validator(schema)
    errors = list(validator.iter_errors(data))
    if errors:
        raise ConfigError(_format_schema_error(jsonschema.exceptions.best_match(errors), source))
    full = _merge(DEFAULTS, data)
    cfg = Config(full, source, root)
    for section, key in FILE_KEYS:
        value = full[section].get(key)
        if value is not None and not cfg.path(value).exists():
            raise ConfigError(f"{source}: {section}.{key} = {json.dumps(value)}: no such file "
                              f"({cfg.path(value)}); create it or set the key to null")
    if (full["node1"]["cert_file"] is None) != (full["node1"]["key_file"] is None):
        raise ConfigError(f"{source}: node1.cert_file and node1.key_file must be set together "
                          f"(got cert_file={json.dumps(full['node1']['cert_file'])}, "
                          f"key_file={json.dumps(full['node1']['key_file'])})")
    if full["gvirtus"]["secure"] and not (full["gvirtus"]["tls_cert_file"] and full["gvirtus"]["tls_key_file"]):
        raise ConfigError(f"{source}: gvirtus.secure = true needs gvirtus.tls_cert_file and "
                          "gvirtus.tls_key_file (PEM files)")
    if full["transport"]["secure"] and not full["transport"]["curve_key_dir"]:
        raise ConfigError(f"{source}: transport.secure = true needs transport.curve_key_dir "
                          "(a folder with CurveZMQ keys; see README)")
    _check_store(full, source)
    _check_pool(full, source)
    _check_ports_distinct(full, source)
    return cfg


LOOPBACK_HOSTS = ("127.0.0.1", "::1", "localhost")
REDIS_SOCKET_NAME = "redis/redis.sock"   # under paths.var_dir when node1.redis names no address


def _check_store(full: dict, source: str) -> None:
    n1 = full["node1"]
    rd = n1["redis"]
    if n1["store"] == "memory" and n1["web_processes"] > 1:
        raise ConfigError(f"{source}: node1.web_processes = {n1['web_processes']} needs node1.store = \"redis\" "
                          f"(got node1.store = {json.dumps(n1['store'])}): with the in-memory store each web "
                          "process would keep its own jobs, results and rate limits")
    if (rd["host"] is None) != (rd["port"] is None):
        raise ConfigError(f"{source}: node1.redis.host and node1.redis.port must be set together "
                          f"(got host={json.dumps(rd['host'])}, port={json.dumps(rd['port'])})")
    if rd["host"] is not None and rd["unix_socket"] is not None:
        raise ConfigError(f"{source}: node1.redis: set unix_socket = {json.dumps(rd['unix_socket'])} or "
                          f"host/port = {json.dumps(rd['host'])}:{rd['port']}, not both")
    if n1["store"] == "redis" and rd["managed"] and rd["host"] is not None and rd["host"] not in LOOPBACK_HOSTS:
        raise ConfigError(f"{source}: node1.redis.host = {json.dumps(rd['host'])} with node1.redis.managed = true: "
                          "the Redis started here binds a unix socket or loopback only; point several hosts "
                          "at one Redis with managed = false")


def _check_pool(full: dict, source: str) -> None:
    names = [m["name"] for m in full["pool"]["members"]]
    for name in names:
        if names.count(name) > 1:
            raise ConfigError(f"{source}: pool.members names {json.dumps(name)} twice; every member needs its own name")
    addrs = [(m["host"], m["gateway_port"]) for m in full["pool"]["members"]]
    for addr in addrs:
        if addrs.count(addr) > 1:
            raise ConfigError(f"{source}: pool.members lists the gateway {addr[0]}:{addr[1]} twice")


def redis_address(cfg: Config) -> str | tuple[str, int]:
    """Where node 1's Redis listens: a unix socket path (default <paths.var_dir>/redis/redis.sock) or (host, port)."""
    rd = cfg["node1"]["redis"]
    if rd["host"] is not None:
        return str(rd["host"]), int(rd["port"])
    if rd["unix_socket"] is not None:
        return str(cfg.path(rd["unix_socket"]))
    return str(cfg.path(cfg["paths"]["var_dir"]) / REDIS_SOCKET_NAME)


def _check_ports_distinct(full: dict, source: str) -> None:
    ports = {
        "node1.https_port": full["node1"]["https_port"],
        "node2.gvirtus_port": full["node2"]["gvirtus_port"],
        "node2.gvirtus_data_port": full["node2"]["gvirtus_data_port"],
        "node2.gateway_port": full["node2"]["gateway_port"],
        "node2.health_port": full["node2"]["health_port"],
        "viton.port": full["viton"]["port"],
        "node1.redis.port": full["node1"]["redis"]["port"] or 0,
        "transport.rdma.rdma_port": full["transport"]["rdma"]["rdma_port"],
    }
    seen: dict[int, str] = {}
    for key, port in ports.items():
        if port == 0:  # ephemeral
            continue
        if port in seen:
            raise ConfigError(f"{source}: {key} = {port} is the same port as {seen[port]}; "
                              "every service needs its own port")
        seen[port] = key


def load(path: str | os.PathLike[str] | None = None, env: Mapping[str, str] | None = None) -> Config:
    """Load, override from the environment, and validate the configuration.

    Args:
        path: config file; default `$VM_CONFIG`, else `env_config.json` at the repo root.
        env: environment to read overrides from (default `os.environ`).
    """
    env = os.environ if env is None else env
    p = Path(path or env.get("VM_CONFIG") or DEFAULT_CONFIG_PATH)
    source = str(p)
    try:
        text = p.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"cannot read config file {source}: {exc.strerror}") from exc
    try:
        raw = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ConfigError(f"{source} is not valid JSON: {exc.msg} at line {exc.lineno} column {exc.colno}") from exc
    if not isinstance(raw, dict):
        raise ConfigError(f"{source}: the top level must be a JSON object, got {type(raw).__name__}")
    return validate(_apply_env(raw, env), source)
