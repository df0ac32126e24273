"""Central's monitoring web page, its API, /metrics and offline API docs (see routes.py)."""

from sync.central.web.routes import WEB_ROUTES, WebAuth, install_web, is_open

__all__ = ["WEB_ROUTES", "WebAuth", "install_web", "is_open"]
