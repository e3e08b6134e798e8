"""A registry process of a test's own (TLS and auth optional), and small images made by hand in a registry."""
from __future__ import annotations

import json
import os
from pathlib import Path

from imagekit import digests, wait
from imagekit.oci import MANIFEST_TYPES, OCI_MANIFEST, Manifest
from support.keys import record_verified
from support.servers import free_port, listening


class RegistryProcess:
    """A docker-registry (CNCF Distribution) of the test's own: own port, own storage, stoppable."""

    def __init__(self, root: Path, *, tls: tuple[Path, Path] | None = None, htpasswd: Path | None = None) -> None:
        self.port = free_port()
        self.host = f"127.0.0.1:{self.port}"
        self.root = root
        lines = ["version: 0.1", "log: {level: error}",
                 f"storage: {{filesystem: {{rootdirectory: {root / 'data'}}}, delete: {{enabled: true}}}}",
                 f'http: {{addr: "{self.host}"' + (f", tls: {{certificate: {tls[0]}, key: {tls[1]}}}" if tls else "")
                 + "}"]
        if htpasswd:
            lines.append(f"auth: {{htpasswd: {{realm: imagekit-test, path: {htpasswd}}}}}")
        self.config = root / "registry.yml"
        root.mkdir(parents=True, exist_ok=True)
        self.config.write_text("\n".join(lines) + "\n")
        self.scheme = "https" if tls else "http"
        self.proc = None

    def start(self) -> "RegistryProcess":
        import subprocess

        self.proc = subprocess.Popen(["docker-registry", "serve", str(self.config)],
                                     stdout=subprocess.DEVNULL, stderr=open(self.root / "registry.log", "ab"))
        try:
            listening(self.proc, self.port, f"the registry on {self.host}", timeout=10)
        except wait.NotReady as e:
            raise RuntimeError(f"registry on {self.host} did not start ({e}): "
                               f"{(self.root / 'registry.log').read_text()}") from None
        pushed_to(self.host)
        return self

    def stop(self) -> None:
        if self.proc:
            self.proc.kill()
            self.proc.wait()
            self.proc = None


def pushed_to(host: str) -> None:
    """A registry of a test run's (PYTEST_IMAGEKIT_SHARED): the names its pushes leave are forgotten at its end."""
    if "PYTEST_IMAGEKIT_SHARED" in os.environ:
        with open(Path(os.environ["PYTEST_IMAGEKIT_SHARED"]) / "registries", "a") as f:
            f.write(host + "\n")


def forget(engine, hosts) -> None:
    """Remove the engine's names of images in the registries ``hosts`` (the tags and digests pushes leave):
    only the names; an image another name holds stays."""
    from support.images import untag

    prefixes = tuple(f"{h}/" for h in hosts)
    untag(engine, [ref for image in engine.client.images.list()
                   for ref in [*image.tags, *image.attrs.get("RepoDigests", [])] if ref.startswith(prefixes)])


def make_tls(folder: Path) -> tuple[Path, Path, Path]:
    """A test CA and a certificate for 127.0.0.1 signed by it: (ca.pem, cert.pem, key.pem)."""
    import subprocess

    folder.mkdir(parents=True, exist_ok=True)
    ca, ca_key, cert, key = (folder / n for n in ("ca.pem", "ca.key", "cert.pem", "key.pem"))
    run = lambda *a: subprocess.run(a, check=True, capture_output=True)  # noqa: E731
    run("openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", "/CN=imagekit test CA",
        "-keyout", str(ca_key), "-out", str(ca))
    run("openssl", "req", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=127.0.0.1", "-keyout", str(key),
        "-out", str(folder / "cert.csr"))
    (folder / "ext.cnf").write_text("subjectAltName=IP:127.0.0.1,DNS:localhost\n")
    run("openssl", "x509", "-req", "-in", str(folder / "cert.csr"), "-CA", str(ca), "-CAkey", str(ca_key),
        "-CAcreateserial", "-days", "2", "-extfile", str(folder / "ext.cnf"), "-out", str(cert))
    return ca, cert, key


def make_htpasswd(path: Path, user: str, password: str) -> Path:
    """An htpasswd file with a bcrypt hash, the only kind docker-registry accepts (cost 4: the registry
    checks it on every request, and a test makes thousands)."""
    import bcrypt

    path.write_text(f"{user}:{bcrypt.hashpw(password.encode(), bcrypt.gensalt(rounds=4)).decode()}\n")
    return path


def seed_image(reg, repo: str, tag: str, layers: int, *, verified: Path | None = None, extra: bytes = b"",
               name: str = "ray", labels: dict[str, str] | None = None) -> str:
    """A small image made by hand in the registry: ``layers`` random blobs (and ``extra`` as one
    more), a config, a manifest; ``verified``: a signing key, to attach a passing attestation for it
    alone as image ``name``. Returns its digest."""
    blobs = [os.urandom(4096) for _ in range(layers)] + ([extra] if extra else [])
    config = json.dumps({"architecture": "amd64", "os": "linux", "rootfs": {"type": "layers", "diff_ids": []},
                         "config": {"Labels": labels or {}}}).encode()
    descs = []
    for data, media in [(config, "application/vnd.oci.image.config.v1+json"),
                        *((b, "application/vnd.oci.image.layer.v1.tar") for b in blobs)]:
        digest = digests.oci(data)
        reg.upload_blob(repo, digest, data)
        descs.append({"mediaType": media, "digest": digest, "size": len(data)})
    manifest = Manifest.of({"schemaVersion": 2, "mediaType": OCI_MANIFEST, "config": descs[0], "layers": descs[1:]})
    reg.put_manifest(repo, tag, manifest)
    if verified:
        record_verified(reg, verified, {name: (repo, manifest.digest)})
    return manifest.digest


class RegistryFront:
    """An HTTP front of a test's own before a registry (``upstream`` host:port): each request is asked to
    ``rule(method, path)``, which answers (status, body[, headers]) in the registry's place or None to relay it.
    The fronts of the tests: Harbor's tag immutability, a registry that fails one write or one read."""

    def __init__(self, upstream: str, rule) -> None:
        import http.server
        import threading

        import requests

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def _body(self) -> bytes:
                if self.headers.get("Transfer-Encoding", "").lower() != "chunked":
                    return self.rfile.read(int(self.headers.get("Content-Length") or 0))
                chunks = []
                while size := int(self.rfile.readline().split(b";")[0].strip() or b"0", 16):
                    chunks.append(self.rfile.read(size))
                    self.rfile.readline()
                self.rfile.readline()
                return b"".join(chunks)

            def _relay(self):
                body = self._body()
                answer = rule(self.command, self.path.split("?")[0])
                if answer is not None:  # (status, body[, headers])
                    self.send_response(answer[0])
                    for k, v in (answer[2] if len(answer) > 2 else {}).items():
                        self.send_header(k, v)
                    self.send_header("Content-Length", str(len(answer[1])))
                    self.end_headers()
                    self.wfile.write(answer[1])
                    return
                r = requests.request(self.command, f"http://{upstream}{self.path}", data=body, timeout=300,
                                     headers={k: v for k, v in self.headers.items()
                                              if k.lower() not in ("host", "transfer-encoding", "content-length")},
                                     allow_redirects=False, stream=True)
                self.send_response(r.status_code)
                for k, v in r.headers.items():
                    if k.lower() not in ("transfer-encoding", "connection", "content-length"):
                        self.send_header(k, v.replace(f"http://{upstream}", f"http://{self.headers['Host']}"))
                content = r.content
                self.send_header("Content-Length", r.headers.get("Content-Length", "0") if self.command == "HEAD"
                                 else str(len(content)))
                self.end_headers()
                self.wfile.write(content)

            do_GET = do_HEAD = do_PUT = do_POST = do_PATCH = do_DELETE = _relay

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.host = f"127.0.0.1:{self.server.server_address[1]}"
        pushed_to(self.host)

    def stop(self) -> None:
        self.server.shutdown()


def immutable_tags(upstream: str, refused: list[str]):
    """Harbor's tag immutability: a manifest PUT to a tag that exists is refused (412) and recorded."""
    import requests

    def rule(method: str, path: str):
        if method == "PUT" and "/manifests/" in path and not path.rsplit("/", 1)[1].startswith("sha256:"):
            if requests.head(f"http://{upstream}{path}", timeout=30, headers={"Accept": ", ".join(
                    MANIFEST_TYPES)}).status_code == 200:
                refused.append(path)
                return 412, b'{"errors":[{"code":"DENIED","message":"tag is immutable"}]}'
        return None
    return rule
