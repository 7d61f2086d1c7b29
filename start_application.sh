#!/usr/bin/env bash
# Start Virtual Mirror. First run bootstraps everything (venv, dependencies, model files,
# tokens, TLS certificate); later runs skip what is done. Then it starts the processes of a role
# and stays in the foreground; Ctrl-C (or SIGTERM) stops them all.
#   ./start_application.sh                 # DEPLOYMENT=LOCAL (default): every role on this host
#   ./start_application.sh --role node2    # DISTRIBUTED: this host is node 2 (gvirtus, gateway, VITON)
#   ./start_application.sh --role node1    # DISTRIBUTED: this host is node 1 (HTTPS web app)
#   ./start_application.sh --containers [--role R]   the same, as containers from the local images
#                                          (scripts/build_images.sh or a registry; docs/deploy.md)
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
cd "$ROOT"

# --containers: no .venv needed, the system's python3 drives podman/docker (mirror/containers.py).
args=(); containers=0
for a in "$@"; do if [[ "$a" == "--containers" ]]; then containers=1; else args+=("$a"); fi; done
if (( containers )); then
  if ! command -v podman >/dev/null && ! command -v docker >/dev/null && [[ $(id -u) == 0 ]] \
     && command -v apt-get >/dev/null && [[ -z "${VM_SKIP_APT:-}" ]]; then
    echo "installing podman (apt; log in /tmp/vm-apt.log)" >&2
    { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
        podman runc iptables golang-github-containernetworking-plugin-dnsname; } >/tmp/vm-apt.log 2>&1 \
      || echo "WARNING: apt install failed (see /tmp/vm-apt.log)" >&2
  fi
  mkdir -p secrets && chmod 700 secrets
  for name in gvirtus.token operator.token; do  # as scripts/bootstrap.sh: generated once, mode 600
    [[ -s secrets/$name ]] ||
      (umask 077; python3 -c 'import secrets; print(secrets.token_urlsafe(32))' > "secrets/$name")
  done
  exec python3 -I mirror/containers.py "${args[@]}"  # -I: no PYTHON* variables, no script dir on the path
fi

scripts/bootstrap.sh
exec .venv/bin/python -m mirror.launch "$@"
