"""The shopper's page (/ and /static/...) and the security headers every response gets."""

from __future__ import annotations

from flask import Blueprint, Flask, Response, current_app, render_template

from node1.tryon import STAGES

bp = Blueprint("pages", __name__, template_folder="templates", static_folder="static",
               static_url_path="/static")

# No inline script or style; camera frames and result images come as blob: URLs.
CONTENT_SECURITY_POLICY = ("default-src 'self'; img-src 'self' blob: data:; media-src 'self' blob: mediastream:; "
                           "script-src 'self'; style-src 'self'; connect-src 'self'; object-src 'none'; "
                           "base-uri 'none'; frame-ancestors 'none'; form-action 'self'")


@bp.get("/")
def index() -> str:
    from node1.web import state_of

    state = state_of(current_app)
    return render_template("index.html", stages=STAGES, upload_max_mb=state.upload_max_bytes // (1024 * 1024),
                           image_max_side=state.image_max_side)


def register_security_headers(app: Flask) -> None:
    @app.after_request
    def _headers(resp: Response) -> Response:
        h = resp.headers
        h.setdefault("Content-Security-Policy", CONTENT_SECURITY_POLICY)
        h.setdefault("X-Content-Type-Options", "nosniff")
        h.setdefault("Referrer-Policy", "no-referrer")
        h.setdefault("X-Frame-Options", "DENY")
        h.setdefault("Permissions-Policy", "camera=(self), microphone=(), geolocation=()")
        return resp
