#!/usr/bin/env bash
# Move the Virtual Mirror images to an air-gapped node without a registry: one gzip'd archive (layers
# the images share are stored once) plus its sha256, checked before loading.
#   scripts/images_transfer.sh save FILE.tar.gz [ROLE...]   # ROLE: node1 node2 viton (default: all three)
#   scripts/images_transfer.sh load FILE.tar.gz             # on the node (FILE.tar.gz.sha256 beside it)
# Per node: host A needs node1, host B needs node2 and viton, e.g.
#   scripts/images_transfer.sh save /media/usb/vm-node2.tar.gz node2 viton
# Environment: VM_CONTAINER_ENGINE (podman | docker), VM_IMAGE_TAG (default: pyproject's version),
# VM_GZIP_LEVEL (1-9, default 6).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"

log() { printf '%s images_transfer %s\n' "$(date -u +%H:%M:%S)" "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }

ENGINE="${VM_CONTAINER_ENGINE:-}"
if [[ -z "$ENGINE" ]]; then
  if command -v podman >/dev/null; then ENGINE=podman; elif command -v docker >/dev/null; then ENGINE=docker
  else die "neither podman nor docker is installed"; fi
fi
if [[ "$ENGINE" == podman && -z "${CONTAINERS_CONF:-}" ]] && command -v runc >/dev/null; then
  export CONTAINERS_CONF="$ROOT/deploy/containers.conf"
fi
TAG="${VM_IMAGE_TAG:-$(sed -n 's/^version = "\(.*\)"/\1/p' "$ROOT/pyproject.toml" | head -1)}"

cmd="${1:-}"; file="${2:-}"
[[ -n "$cmd" && -n "$file" ]] || { sed -n '2,10p' "$0"; exit 2; }
shift 2
case "$cmd" in
  save)
    roles=("$@"); (( ${#roles[@]} )) || roles=(node1 node2 viton)
    images=()
    for r in "${roles[@]}"; do
      [[ "$r" =~ ^(node1|node2|viton)$ ]] || die "unknown role $r (node1, node2 or viton)"
      img="virtual-mirror-$r:$TAG"
      "$ENGINE" image inspect "$img" >/dev/null 2>&1 || die "image $img is not here: build it (scripts/build_images.sh)"
      images+=("$img")
    done
    multi=(); [[ "$ENGINE" == podman ]] && multi=(--multi-image-archive)
    log "saving ${images[*]} to $file"
    "$ENGINE" save "${multi[@]}" "${images[@]}" | gzip -"${VM_GZIP_LEVEL:-6}" > "$file.part"
    mv "$file.part" "$file"
    (cd "$(dirname "$file")" && sha256sum "$(basename "$file")" > "$(basename "$file").sha256")
    log "wrote $file ($(du -m "$file" | cut -f1) MB) and $file.sha256"
    ;;
  load)
    [[ -f "$file" ]] || die "no such file: $file"
    if [[ -f "$file.sha256" ]]; then
      (cd "$(dirname "$file")" && sha256sum --quiet -c "$(basename "$file").sha256") \
        || die "$file does not match $file.sha256: copy it again"
    else
      log "WARNING: no $file.sha256 beside it: the archive is not checked"
    fi
    gunzip -c "$file" | "$ENGINE" load
    ;;
  *) die "unknown command $cmd: save or load" ;;
esac
