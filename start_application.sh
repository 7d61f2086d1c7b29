#!/usr/bin/env bash
# Start Virtual Mirror. First run bootstraps everything (venv, dependencies, model files,
# tokens, TLS certificate); later runs skip what is done. Then it starts the processes of a role
# and stays in the foreground; Ctrl-C (or SIGTERM) stops them all.
#   ./start_application.sh                 # DEPLOYMENT=LOCAL (default): every role on this host
#   ./start_application.sh --role node2    # DISTRIBUTED: this host is node 2 (gvirtus, gateway, VITON)
#   ./start_application.sh --role node1    # DISTRIBUTED: this host is node 1 (HTTPS web app)
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
cd "$ROOT"
scripts/bootstrap.sh
exec .venv/bin/python -m mirror.launch "$@"
