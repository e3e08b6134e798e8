"""The S3 stand-in's launcher (images/s3/s3server.py) routes requests as moto does, without moto's
listing of its own package folder on every request."""
import importlib.util
import os

from helpers import ROOT
from moto import backends
from moto.moto_server.werkzeug_app import DomainDispatcherApplication, create_backend_app


def test_the_launcher_routes_as_moto_does_without_listing_moto_per_request(monkeypatch):
    spec = importlib.util.spec_from_file_location("s3server", ROOT / "images" / "s3" / "s3server.py")
    s3server = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(s3server)
    services = list(backends.list_of_moto_modules())
    monkeypatch.setattr(backends, "list_of_moto_modules", backends.list_of_moto_modules)  # moto's own, put back after
    s3server.fast_routing()

    def listed(path):
        raise AssertionError(f"moto's folder listed again: {path}")
    monkeypatch.setattr(os, "listdir", listed)
    assert list(backends.list_of_moto_modules()) == services and "s3" in services
    app = DomainDispatcherApplication(create_backend_app)
    assert app.get_backend_for_host("s3") == "s3" and app.get_backend_for_host("no-such-service") is None
