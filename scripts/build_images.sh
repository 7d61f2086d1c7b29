#!/usr/bin/env bash
# Build the three Virtual Mirror images (node 1, node 2, VITON) from deploy/:
#   1. the base (default: Debian bookworm made here with debootstrap, no registry needed), when missing
#   2. the shared runtime (deploy/Containerfile.runtime: Python, pinned deps, torch), when missing
#   3. virtual-mirror-node1, virtual-mirror-node2, virtual-mirror-viton (deploy/Containerfile),
#      tagged VERSION (pyproject.toml) and the git revision (+ "-dirty" for uncommitted changes;
#      "-cuda" after both with --gpu); then prints their sizes.
#
#   scripts/build_images.sh [--gpu] [--base IMAGE] [--no-cache] [--prune] [--quiet]
#     --gpu          torch from the index instead of the CPU wheel (PyPI's Linux torch is the CUDA
#                    build), base docker.io/library/debian:bookworm-slim, tags VERSION-cuda; for node 2 and
#                    VITON on GPU hosts (not built on these machines: no GPU, no registry)
#     --base IMAGE   another Debian 12 base image
#     --no-cache     rebuild every layer
#     --prune        then remove this project's images of other revisions and unused runtimes
# Environment:
#   VM_CONTAINER_ENGINE  podman (default when installed) or docker
#   VM_BUILD_CA          CA bundle of a TLS-intercepting proxy for pip (default: $PIP_CERT when set);
#                        mounted as a build secret, kept in no layer
#   VM_WHEELS_DIR        where the torch CPU wheel lies (default /opt/wheels)
#   VM_DEBIAN_MIRROR     debootstrap mirror (default: the host's first deb.debian.org-like URI)
#   VM_SOURCE_URL        the OCI source label (default: git remote origin)
#   PIP_INDEX_URL, PIP_EXTRA_INDEX_URL   passed to pip in the runtime build
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

log() { printf '%s build_images %s\n' "$(date -u +%H:%M:%S)" "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }

GPU=0; NO_CACHE=(); QUIET=(); BASE=""; PRUNE=0
while (( $# )); do
  case "$1" in
    --gpu) GPU=1 ;;
    --base) BASE="${2:?--base needs an image}"; shift ;;
    --no-cache) NO_CACHE=(--no-cache) ;;
    --quiet) QUIET=(--quiet) ;;
    --prune) PRUNE=1 ;;
    -h|--help) sed -n '2,/^set -euo/p' "$0" | sed '$d'; exit 0 ;;
    *) die "unknown argument $1 (see --help)" ;;
  esac
  shift
done

# --- engine -------------------------------------------------------------------------------------
ENGINE="${VM_CONTAINER_ENGINE:-}"
if [[ -z "$ENGINE" ]]; then
  if command -v podman >/dev/null; then ENGINE=podman
  elif command -v docker >/dev/null; then ENGINE=docker
  else die "neither podman nor docker is installed (Debian: apt-get install podman runc)"; fi
fi
command -v "$ENGINE" >/dev/null || die "VM_CONTAINER_ENGINE=$ENGINE is not installed"
if [[ "$ENGINE" == podman && -z "${CONTAINERS_CONF:-}" ]] && command -v runc >/dev/null; then
  export CONTAINERS_CONF="$ROOT/deploy/containers.conf"
fi
FORMAT=()
[[ "$ENGINE" == podman ]] && FORMAT=(--format docker)  # OCI image configs cannot carry HEALTHCHECK

image_exists() {
  if [[ "$ENGINE" == podman ]]; then podman image exists "$1"; else docker image inspect "$1" >/dev/null 2>&1; fi
}

# --- names --------------------------------------------------------------------------------------
VERSION=$(sed -n 's/^version = "\(.*\)"/\1/p' pyproject.toml | head -1)
[[ -n "$VERSION" ]] || die "no version in pyproject.toml"
REVISION=$(git rev-parse HEAD 2>/dev/null || echo unknown)
REV_TAG="${REVISION:0:12}"
if [[ "$REVISION" != unknown && -n "$(git status --porcelain --untracked-files=no 2>/dev/null)" ]]; then
  REVISION="$REVISION-dirty"; REV_TAG="$REV_TAG-dirty"
fi
SUFFIX=""
(( GPU )) && SUFFIX="-cuda"
TAG="$VERSION$SUFFIX"; REV_TAG="$REV_TAG$SUFFIX"
SOURCE_URL="${VM_SOURCE_URL:-$(git config --get remote.origin.url 2>/dev/null || echo unknown)}"
DEFAULT_BASE=localhost/virtual-mirror-debian:bookworm
if [[ -z "$BASE" ]]; then
  if (( GPU )); then BASE=docker.io/library/debian:bookworm-slim; else BASE=$DEFAULT_BASE; fi
fi

# --- 1. base ------------------------------------------------------------------------------------
make_base() {
  [[ $(id -u) == 0 ]] || die "making $DEFAULT_BASE needs root (debootstrap); or pass --base IMAGE"
  command -v debootstrap >/dev/null ||
    die "debootstrap is not installed (apt-get install debootstrap); or pass --base IMAGE"
  local mirror="${VM_DEBIAN_MIRROR:-}"
  if [[ -z "$mirror" ]]; then
    mirror=$(sed -n 's/^URIs: *\(\S*debian\)\/*$/\1/p' /etc/apt/sources.list.d/*.sources 2>/dev/null | head -1)
    mirror="${mirror:-http://deb.debian.org/debian}"
  fi
  local rootfs
  rootfs=$(mktemp -d /var/tmp/vm-rootfs.XXXXXX)
  log "making $DEFAULT_BASE with debootstrap (minbase, bookworm, $mirror)"
  debootstrap --variant=minbase bookworm "$rootfs" "$mirror" >"$rootfs.log" 2>&1 \
    || { tail -20 "$rootfs.log" >&2; die "debootstrap failed (log above)"; }
  rm -f "$rootfs.log"
  cat > "$rootfs/etc/apt/sources.list" <<EOF
deb $mirror bookworm main
deb $mirror bookworm-updates main
deb ${mirror%/debian}/debian-security bookworm-security main
EOF
  # Slim like Debian's -slim images: no manuals, docs (but the copyright files) or translations,
  # now and for every package installed later.
  cat > "$rootfs/etc/dpkg/dpkg.cfg.d/virtual-mirror-slim" <<'EOF'
path-exclude /usr/share/doc/*
path-include /usr/share/doc/*/copyright
path-exclude /usr/share/man/*
path-exclude /usr/share/info/*
path-exclude /usr/share/locale/*
path-exclude /usr/share/lintian/*
EOF
  find "$rootfs/usr/share/doc" -mindepth 1 -not -name copyright -not -type d -delete
  rm -rf "$rootfs"/usr/share/man/* "$rootfs"/usr/share/info/* "$rootfs"/usr/share/locale/* "$rootfs"/usr/share/lintian/*
  rm -rf "$rootfs"/var/cache/apt/archives/*.deb "$rootfs"/var/lib/apt/lists/* "$rootfs"/var/log/*.log
  tar -C "$rootfs" -c . | "$ENGINE" import --change 'CMD ["/bin/bash"]' - "$DEFAULT_BASE" >/dev/null
  rm -rf "$rootfs"
}
if ! image_exists "$BASE"; then
  if [[ "$BASE" == "$DEFAULT_BASE" ]]; then make_base; else
    log "pulling $BASE"; "$ENGINE" pull "$BASE" >/dev/null || die "cannot pull $BASE"
  fi
fi

# --- 2. shared runtime (only rebuilt when its inputs change) ------------------------------------
SECRET=()
CA="${VM_BUILD_CA:-${PIP_CERT:-}}"
if [[ -n "$CA" ]]; then
  [[ -r "$CA" ]] || die "VM_BUILD_CA / PIP_CERT names $CA, which is not a readable file"
  SECRET=(--secret "id=pip_ca,src=$CA")
fi
ctx=$(mktemp -d /var/tmp/vm-runtime-ctx.XXXXXX)
trap 'rm -rf "$ctx"' EXIT
mkdir -p "$ctx/requirements" "$ctx/wheels"
cp requirements/runtime.txt requirements/lock.txt "$ctx/requirements/"
if (( ! GPU )); then
  wheel=$(ls "${VM_WHEELS_DIR:-/opt/wheels}"/torch-2.13.0+cpu-cp311-*.whl 2>/dev/null | head -1 || true)
  if [[ -n "$wheel" ]]; then
    ln "$wheel" "$ctx/wheels/" 2>/dev/null || cp "$wheel" "$ctx/wheels/"
  else
    log "WARNING: no torch CPU wheel in ${VM_WHEELS_DIR:-/opt/wheels}: pip takes torch==2.13.0 from the index"
  fi
fi
base_id=$("$ENGINE" image inspect --format '{{.Id}}' "$BASE")
digest=$( { cat deploy/Containerfile.runtime "$ctx"/requirements/*; echo "$base_id"; ls "$ctx/wheels";
            echo "${PIP_INDEX_URL:-} ${PIP_EXTRA_INDEX_URL:-}"; } | sha256sum | cut -c1-12)
RUNTIME="localhost/virtual-mirror-runtime:$digest"
if (( ${#NO_CACHE[@]} )) || ! image_exists "$RUNTIME"; then
  log "building the shared runtime $RUNTIME (from $BASE)"
  "$ENGINE" build "${FORMAT[@]}" "${NO_CACHE[@]}" "${QUIET[@]}" "${SECRET[@]}" -f deploy/Containerfile.runtime \
    --build-arg "BASE_IMAGE=$BASE" --build-arg "PIP_INDEX_URL=${PIP_INDEX_URL:-}" \
    --build-arg "PIP_EXTRA_INDEX_URL=${PIP_EXTRA_INDEX_URL:-}" -t "$RUNTIME" "$ctx"
fi

# --- 3. the three role images -------------------------------------------------------------------
IGNORE=()
[[ "$ENGINE" == podman ]] && IGNORE=(--ignorefile deploy/Containerfile.dockerignore)  # BuildKit finds it by name
for role in node1 node2 viton; do
  log "building virtual-mirror-$role:$TAG ($REV_TAG)"
  "$ENGINE" build "${FORMAT[@]}" "${NO_CACHE[@]}" "${QUIET[@]}" "${IGNORE[@]}" -f deploy/Containerfile \
    --target "$role" --build-arg "RUNTIME_IMAGE=$RUNTIME" --build-arg "VERSION=$VERSION" \
    --build-arg "REVISION=$REVISION" --build-arg "SOURCE_URL=$SOURCE_URL" \
    -t "virtual-mirror-$role:$TAG" -t "virtual-mirror-$role:$REV_TAG" . >/dev/null
done

if (( PRUNE )); then
  for role in node1 node2 viton; do
    "$ENGINE" images --format '{{.Repository}}:{{.Tag}}' | grep -E "/?virtual-mirror-$role:" \
      | grep -v -E ":($TAG|$REV_TAG)\$" | xargs -r "$ENGINE" rmi >/dev/null 2>&1 || true
  done
  "$ENGINE" images --format '{{.Repository}}:{{.Tag}}' | grep -E "/?virtual-mirror-runtime:" | grep -v -F "$RUNTIME" \
    | xargs -r "$ENGINE" rmi >/dev/null 2>&1 || true   # refused while an image still uses it
fi

printf '%-24s %-10s %-20s %8s\n' image tag revision "size MB"
for role in node1 node2 viton; do
  size=$("$ENGINE" image inspect --format '{{.Size}}' "virtual-mirror-$role:$TAG")
  printf '%-24s %-10s %-20s %8d\n' "virtual-mirror-$role" "$TAG" "$REV_TAG" $(( size / 1000000 ))
done
