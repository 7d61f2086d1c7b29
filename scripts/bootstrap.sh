#!/usr/bin/env bash
# Idempotent set-up shared by start_application.sh and run_tests.sh.
#   scripts/bootstrap.sh [--dev]
# 1. apt packages (only when root and apt-get exists; failures are warnings, never fatal)
# 2. .venv/ with the pinned Python dependencies (skipped while the pins are unchanged)
# 3. model files (fetched once, sha256-verified every time), the demo garment catalog
# 4. secrets/ (gvirtus and operator tokens, generated once, mode 600)
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
DEV=0
[[ "${1:-}" == "--dev" ]] && DEV=1

log() { printf '%s bootstrap %s\n' "$(date -u +%H:%M:%S)" "$*" >&2; }

# --- 1. apt ---------------------------------------------------------------
# redis-server: node 1's shared store when node1.store is "redis" (started by the supervisor, not by
# systemd; on a host running systemd Debian's package also enables its own redis-server.service on
# 127.0.0.1:6379, which Virtual Mirror does not use: `systemctl disable --now redis-server` if unwanted)
APT_RUNTIME=(iproute2 rdma-core ibverbs-providers python3-pyverbs libtcmalloc-minimal4 redis-server)
# dnsmasq-base: the DNS server tests/pool starts to check node 1's DNS discovery of node 2s
APT_DEV=(chromium chromium-driver dnsmasq-base)
# Containers (scripts/build_images.sh, start_application.sh --containers, tests/deploy): with --dev or
# VM_CONTAINERS=1. No recommends: rootful podman needs neither slirp4netns nor catatonit (the images
# bring tini); dnsname lets the LOCAL containers find each other by name.
APT_CONTAINERS=(podman runc iptables debootstrap podman-compose golang-github-containernetworking-plugin-dnsname)
want=("${APT_RUNTIME[@]}")
(( DEV )) && want+=("${APT_DEV[@]}")
if (( DEV )) || [[ -n "${VM_CONTAINERS:-}" ]]; then want+=("${APT_CONTAINERS[@]}"); fi
if [[ $(id -u) == 0 ]] && command -v apt-get >/dev/null && [[ -z "${VM_SKIP_APT:-}" ]]; then
  missing=()
  for p in "${want[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
  done
  if (( ${#missing[@]} )); then
    log "installing apt packages: ${missing[*]}"
    if ! { apt-get update -qq &&
           DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}"; \
         } >/tmp/vm-apt.log 2>&1; then
      log "WARNING: apt install failed (see /tmp/vm-apt.log); features needing ${missing[*]} will be skipped"
    fi
  fi
else
  log "not root or no apt-get: skipping apt packages (${want[*]})"
fi

# --- 2. venv --------------------------------------------------------------
PY="${VM_PYTHON:-python3}"
if [[ ! -x .venv/bin/python ]]; then
  log "creating .venv with $($PY --version 2>&1)"
  "$PY" -m venv .venv
fi
reqs=requirements/runtime.txt
(( DEV )) && reqs=requirements/dev.txt
stamp=".venv/.vm-installed-$(basename "$reqs" .txt)"
digest=$(cat requirements/*.txt | sha256sum | cut -c1-16)
if [[ "$(cat "$stamp" 2>/dev/null)" != "$digest" ]]; then
  log "installing Python dependencies from $reqs (constraints: requirements/lock.txt)"
  .venv/bin/python -m pip install -q --disable-pip-version-check -r "$reqs" -c requirements/lock.txt 2>&1 \
    | { grep -v "^WARNING: Location" || true; }
  echo "$digest" > "$stamp"
fi
# Debian's pyverbs is built for the system Python 3.11; expose only that package to the venv.
if [[ -d /usr/lib/python3/dist-packages/pyverbs ]]; then
  mkdir -p .venv/pyverbs-shim
  ln -sfn /usr/lib/python3/dist-packages/pyverbs .venv/pyverbs-shim/pyverbs
  site=$(.venv/bin/python -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
  echo "$ROOT/.venv/pyverbs-shim" > "$site/vm_pyverbs.pth"
fi

# --- 3. models ------------------------------------------------------------
.venv/bin/python scripts/fetch_models.py

# --- 4. secrets (before the catalog: it loads env_config, which names the token files) -----------
mkdir -p secrets && chmod 700 secrets
for name in gvirtus.token operator.token; do
  if [[ ! -s secrets/$name ]]; then
    (umask 077; .venv/bin/python -c 'import secrets; print(secrets.token_urlsafe(32))' > secrets/$name)
    log "generated secrets/$name"
  fi
done

# --- 3b. demo garment catalog (generated, seeded; paths.catalog_dir/demo) ---------------
.venv/bin/python scripts/prepare_catalog.py
log "ready"
