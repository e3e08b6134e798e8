"""A TCP relay from where containers reach this host to a service on its loopback.

``kubectl port-forward svc/minio 9000`` listens on 127.0.0.1 only: a container reaching the host
through the engine's gateway (host.docker.internal) finds nothing there. For the duration of a run
imagekit listens on the default bridge's gateway address (reachable from containers, not from other
machines) and relays each connection to the loopback service.
"""
from __future__ import annotations

import contextlib
import ipaddress
import os
import socket
import threading
import time
from urllib.parse import urlsplit

from imagekit.errors import PreconditionError

HOST_ALIAS = "host.docker.internal"  # mapped to the engine host's gateway in every container


def is_loopback(url: str) -> bool:
    host = urlsplit(url).hostname or ""
    with contextlib.suppress(ValueError):
        return ipaddress.ip_address(host).is_loopback or host == "0.0.0.0"
    return host == "localhost"


def local_engine() -> bool:
    """The engine runs on this machine (its containers' gateway is one of this host's addresses)."""
    host = os.environ.get("DOCKER_HOST", "")
    return not host or host.startswith("unix://") or is_loopback(host)


def require_local(url: str, what: str) -> None:
    """A loopback ``url`` can be relayed only when the engine runs here: else refused, before any work."""
    if is_loopback(url) and not local_engine():
        raise refuse(url, what, f"the engine ({os.environ['DOCKER_HOST']}) runs on another machine")


def refuse(url: str, what: str, why: str) -> PreconditionError:
    port = urlsplit(url).port or 9000
    return PreconditionError(f"{what} {url} is on this machine's loopback, which the containers cannot reach: {why}",
                             hint=f"listen where they can, e.g. `kubectl port-forward --address 0.0.0.0 "
                                  f"svc/<service> {port}`, and pass this machine's address")


class Forwarder(contextlib.AbstractContextManager):
    """Relays connections to ``gateway:<port>`` to the loopback ``url``'s host and port."""

    def __init__(self, url: str, gateway: str) -> None:
        parts = urlsplit(url)
        self.target = ("127.0.0.1" if parts.hostname in ("localhost", "0.0.0.0") else parts.hostname,
                       parts.port or (443 if parts.scheme == "https" else 80))
        self.listener = socket.socket(socket.AF_INET)
        try:
            self.listener.bind((gateway, 0))
        except OSError as e:
            self.listener.close()
            raise refuse(url, "the endpoint", f"cannot listen on the engine's gateway {gateway} ({e.strerror})") from None
        self.listener.listen(64)
        self.open: set[socket.socket] = set()  # the live connections' sockets: closed with the relay
        self.closed = False
        self.port = self.listener.getsockname()[1]
        # by its address, not HOST_ALIAS: a service that checks the Host header (MLflow 3's DNS-rebinding
        # guard lets private addresses in, not names it was not told) takes it as a port-forward's
        self.inside = parts._replace(netloc=f"{gateway}:{self.port}").geturl()

    def __enter__(self) -> "Forwarder":
        threading.Thread(target=self._accept, daemon=True).start()
        return self

    def __exit__(self, *exc) -> None:
        self.closed = True
        with contextlib.suppress(OSError):
            self.listener.shutdown(socket.SHUT_RDWR)
        self.listener.close()
        for s in list(self.open):
            with contextlib.suppress(OSError):
                s.close()

    def _accept(self) -> None:
        while not self.closed:
            try:
                conn, _ = self.listener.accept()
            except OSError:  # closed, or out of descriptors for a moment: keep serving until the run ends
                time.sleep(0.05)
                continue
            threading.Thread(target=self._relay, args=(conn,), daemon=True).start()

    def _relay(self, conn: socket.socket) -> None:
        """One connection, both ways, until both ends are done; then both sockets are closed (an
        HTTP/1.0 server makes a connection per request: tens of thousands in a lake's check)."""
        try:
            upstream = socket.create_connection(self.target, timeout=10)
        except OSError:
            conn.close()
            return
        upstream.settimeout(None)
        pair = (conn, upstream)
        self.open.update(pair)
        back = threading.Thread(target=_pump, args=(upstream, conn), daemon=True)
        back.start()
        _pump(conn, upstream)
        back.join()
        for s in pair:
            s.close()
            self.open.discard(s)


def _pump(src: socket.socket, dst: socket.socket) -> None:
    with contextlib.suppress(OSError):
        while data := src.recv(65536):
            dst.sendall(data)
    with contextlib.suppress(OSError):  # the other way may still be talking
        dst.shutdown(socket.SHUT_WR)


def gateway(client) -> str:
    """The address host.docker.internal (host-gateway) resolves to: the default bridge's gateway."""
    config = (client.networks.get("bridge").attrs.get("IPAM") or {}).get("Config") or [{}]
    if config[0].get("Gateway"):
        return config[0]["Gateway"]
    return str(next(ipaddress.ip_network(config[0]["Subnet"]).hosts()))
