"""`python -m node1.cli tryon --photo P --garment G --out O [--in-process]`.

--in-process: the deployment's request path (node1.tryon.runner) in this process, minus the wire:
preprocessing on the CPU and the configured VITON engine here, no servers. G is a catalog garment id (folder
`paths.catalog_dir`, `garments.load_catalog`) or a garment image path (prepared on the fly by
`garments.prepare_garment`). Without --in-process the photo goes to the running deployment's
HTTPS API (node 1 at node1.host:https_port of env_config.json; G must then be a catalog id),
which runs the whole distributed pipeline, and the result is downloaded.
Exit codes: 0 ok, 1 failure, 2 bad input (unreadable photo, no person, unknown garment).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

EXIT_OK, EXIT_FAIL, EXIT_BAD_INPUT = 0, 1, 2


class TryOnCliError(Exception):
    """A CLI failure with its exit code."""

    def __init__(self, message: str, exit_code: int = EXIT_FAIL) -> None:
        super().__init__(message)
        self.exit_code = exit_code


def _load_rgb(path: str) -> np.ndarray:
    try:
        with Image.open(path) as im:
            return np.ascontiguousarray(np.asarray(im.convert("RGB")))
    except (OSError, ValueError) as exc:
        raise TryOnCliError(f"cannot read image {path!r}: {exc}", EXIT_BAD_INPUT) from exc


class _Garments:
    """The runner's garment source for the CLI: the catalog, plus a garment image file prepared here."""

    def __init__(self, cfg: Any) -> None:
        import garments

        self._catalog = garments.load_catalog(cfg.path(cfg["paths"]["catalog_dir"]),
                                              cfg.path(cfg["paths"]["garment_drop_dir"]))
        self._files: dict[str, Any] = {}

    def resolve(self, spec: str) -> str:
        """The garment id of a catalog id or an image path (`garments` public API)."""
        import garments

        try:
            if Path(spec).is_file():
                g = garments.prepare_garment(_load_rgb(spec), Path(spec).stem)
                self._files[g.id] = g
                return str(g.id)
            return str(self._catalog.get(spec).id)
        except garments.GarmentNotFound as exc:
            raise TryOnCliError(f"--garment {spec!r} is neither a file nor a catalog garment id ({exc})",
                                EXIT_BAD_INPUT) from exc
        except garments.GarmentError as exc:
            raise TryOnCliError(f"unusable garment {spec!r}: {exc}", EXIT_BAD_INPUT) from exc

    def garment(self, garment_id: str) -> Any:
        return self._files.get(garment_id) or self._catalog.get(garment_id)


def run_in_process(args: argparse.Namespace) -> int:
    """The same request path as the deployment's (node1.tryon.runner), minus the wire."""
    from mirror import load_config
    from node1.tryon import BadRequest, TryOnError
    from node1.tryon.in_process import build_in_process

    cfg = load_config()
    photo = _load_rgb(args.photo)
    source = _Garments(cfg)
    garment_id = source.resolve(args.garment)
    runner, _ = build_in_process(cfg, catalog=source, result_jpeg_quality=None)  # type: ignore[arg-type]
    try:
        result = runner.run(photo, garment_id, lambda stage, ms: None)
    except BadRequest as exc:
        raise TryOnCliError(f"try-on refused ({exc.code}): {exc.message}", EXIT_BAD_INPUT) from exc
    except TryOnError as exc:
        raise TryOnCliError(f"try-on failed ({exc.code}): {exc.message}") from exc
    finally:
        runner.link.close()  # type: ignore[attr-defined]
    if result.image is None:   # built for raw pixels above
        raise TryOnCliError("the in-process runner returned no pixels")
    Image.fromarray(result.image).save(args.out)
    timings = ", ".join(f"{k} {v:.1f} ms" for k, v in result.timings_ms.items())
    print(f"wrote {args.out} (in process, preprocessing on {result.device}: {timings})")
    return EXIT_OK


API_TIMEOUT_S = 120.0


def run_via_api(args: argparse.Namespace) -> int:
    """The try-on through a running deployment's HTTPS API (node1.cli.http_client)."""
    from mirror import load_config
    from node1.cli.http_client import ApiError, ApiUnreachable, WebClient

    cfg = load_config()
    n1 = cfg["node1"]
    var_dir = cfg.path(cfg["paths"]["var_dir"])
    cafile = cfg.path(n1["cert_file"]) if n1.get("cert_file") else var_dir / "tls" / "node1.crt"
    url = f"https://{n1['host']}:{n1['https_port']}/"
    if Path(args.garment).is_file():
        raise TryOnCliError("through the web API --garment must be a catalog id (operators add garment photos "
                            "with POST /api/garments); use --in-process to try an image file directly",
                            EXIT_BAD_INPUT)
    try:
        photo = Path(args.photo).read_bytes()
    except OSError as exc:
        raise TryOnCliError(f"cannot read {args.photo!r}: {exc.strerror}", EXIT_BAD_INPUT) from exc
    client = WebClient(url, cafile=str(cafile) if cafile.is_file() else None, insecure=not cafile.is_file(),
                       timeout_s=API_TIMEOUT_S)
    try:
        out = client.tryon(photo, args.garment, filename=Path(args.photo).name)
        Path(args.out).write_bytes(client.result(out["result_url"]))
    except ApiError as exc:
        raise TryOnCliError(str(exc), EXIT_BAD_INPUT if 400 <= exc.status < 500 else EXIT_FAIL) from exc
    except ApiUnreachable as exc:
        raise TryOnCliError(f"the deployment at {url} is not reachable ({exc}); start it with "
                            "./start_application.sh or use --in-process") from exc
    timings = ", ".join(f"{k} {v:.1f} ms" for k, v in out["timings_ms"].items())
    print(f"wrote {args.out} (via {url}: device {out['device']}, transport {out['transport']}: {timings})")
    return EXIT_OK


def run_tryon(args: argparse.Namespace) -> int:
    """Entry point of the `tryon` subcommand (see module docstring)."""
    try:
        return run_in_process(args) if args.in_process else run_via_api(args)
    except TryOnCliError as exc:
        print(f"tryon: {exc}", file=sys.stderr)
        return exc.exit_code
