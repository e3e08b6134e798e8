"""The one OCI distribution client: auth challenges (basic, bearer tokens), manifests, blobs, mounts."""
from __future__ import annotations

import ipaddress
import os
from dataclasses import dataclass

import requests

from imagekit.config import Config
from imagekit.errors import ConfigError, RegistryError

TIMEOUT = 30


def is_local(host: str) -> bool:
    name = host.rsplit(":", 1)[0].strip("[]")
    if name == "localhost":
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


@dataclass
class Registry:
    host: str  # host[:port], no scheme
    scheme: str = "https"
    username: str = ""
    password: str = ""
    ca_bundle: str = ""

    @classmethod
    def from_config(cls, cfg: Config) -> "Registry":
        url = cfg.get("registry.url").rstrip("/")
        scheme, _, host = url.rpartition("://")
        scheme = scheme or ("http" if is_local(host) or cfg.get("registry.insecure") else "https")
        if scheme == "http" and not (is_local(host) or cfg.get("registry.insecure")):
            raise ConfigError(f"plain http to {host} is refused", key="registry.url", source=cfg.origins["registry.url"],
                              hint="use https, or set registry.insecure = true to opt in explicitly")
        ca = cfg.path("registry.ca_bundle") if cfg.get("registry.ca_bundle") else ""
        if ca and not os.path.isfile(ca):
            raise ConfigError(f"CA bundle not found: {ca}", key="registry.ca_bundle",
                              source=cfg.origins["registry.ca_bundle"])
        return cls(host=host, scheme=scheme, username=cfg.get("registry.username"),
                   password=cfg.get("registry.password"), ca_bundle=str(ca))

    @property
    def base(self) -> str:
        return f"{self.scheme}://{self.host}"

    def _session(self) -> requests.Session:
        s = requests.Session()
        if self.ca_bundle:
            s.verify = self.ca_bundle
        return s

    def ping(self) -> str:
        """GET /v2/: reachable (200, or 401 asking for credentials) or RegistryError."""
        try:
            r = self._session().get(f"{self.base}/v2/", timeout=TIMEOUT)
        except requests.exceptions.SSLError as e:
            raise RegistryError(f"TLS to {self.host} failed: {e}",
                                hint="set registry.ca_bundle to the registry's CA certificate") from None
        except requests.exceptions.RequestException as e:
            raise RegistryError(f"registry {self.base} is not reachable: {type(e).__name__}",
                                hint="run `make dev-up` for the local registry, or check registry.url") from None
        if r.status_code not in (200, 401):
            raise RegistryError(f"{self.base}/v2/ answered {r.status_code}; not an OCI registry?")
        return f"{self.base} answers the OCI distribution API ({'auth required' if r.status_code == 401 else 'open'})"
