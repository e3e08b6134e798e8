"""The registry client's auth challenge and URL rules, against a fake Harbor on loopback."""
import base64
import http.server
import json
import threading

import pytest
from helpers import write_project

from imagekit import attest, config, digests
from imagekit.errors import ConfigError, RegistryError
from imagekit.oci import OCI_INDEX, Manifest
from imagekit.registry import Registry
from support import make_keys, seed_image
from imagekit import record

ROBOT, SECRET = "robot$mlops+ci", "s3cr3t"


@pytest.fixture
def harbor():
    """/v2/ answers 401 with a Bearer challenge, like Harbor; /service/token grants robot$mlops+ci."""
    seen = []

    class Handler(http.server.BaseHTTPRequestHandler):
        def log_message(self, *args):
            pass

        def do_GET(self):
            host = self.headers["Host"]
            if self.path.startswith("/service/token"):
                auth = base64.b64decode(self.headers.get("Authorization", "Basic ")[6:]).decode()
                seen.append((auth, self.path))
                ok = auth == f"{ROBOT}:{SECRET}"
                return self._send(200 if ok else 401, {"token": "t0ken"} if ok else {"errors": []})
            if self.headers.get("Authorization") != "Bearer t0ken":
                return self._send(401, {}, {"WWW-Authenticate": f'Bearer realm="http://{host}/service/token",'
                                                                f'service="harbor-registry"'})
            return self._send(200, {"name": "mlops-desa/ray", "tags": ["v2", "v1"]})

        def _send(self, code, body, headers=None):
            self.send_response(code)
            for k, v in (headers or {}).items():
                self.send_header(k, v)
            self.send_header("Content-Type", "application/json")
            self.end_headers()
            self.wfile.write(json.dumps(body).encode())

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"127.0.0.1:{server.server_address[1]}", seen
    server.shutdown()


def test_bearer_challenge_gets_a_token_for_a_robot_account(harbor):
    host, seen = harbor
    reg = Registry(host=host, scheme="http", username=ROBOT, password=SECRET)
    assert reg.tags("mlops-desa/ray") == ["v1", "v2"]
    assert seen[0][0] == f"{ROBOT}:{SECRET}"  # the $ and + reach the token service intact
    assert "scope=repository%3Amlops-desa%2Fray%3Apull" in seen[0][1] and "service=harbor-registry" in seen[0][1]
    reg.tags("mlops-desa/ray")
    assert len(seen) == 1  # the token is reused for the same scope


def test_wrong_robot_secret_is_a_clear_error(harbor):
    host, _ = harbor
    with pytest.raises(RegistryError, match="token service .* refused repository:mlops-desa/ray:pull"):
        Registry(host=host, scheme="http", username=ROBOT, password="wrong").tags("mlops-desa/ray")


def test_plain_http_only_for_loopback_or_by_opt_in(tmp_path):
    path = write_project(tmp_path, '[[images]]\nname = "base"\n')
    assert Registry.from_config(config.load(path, env={"IMAGEKIT_REGISTRY_URL": "127.0.0.1:5000"})).scheme == "http"
    assert Registry.from_config(config.load(path, env={"IMAGEKIT_REGISTRY_URL": "harbor.example"})).scheme == "https"
    with pytest.raises(ConfigError, match="plain http to harbor.example is refused"):
        Registry.from_config(config.load(path, env={"IMAGEKIT_REGISTRY_URL": "http://harbor.example"}))
    opted = config.load(path, env={"IMAGEKIT_REGISTRY_URL": "harbor.example", "IMAGEKIT_REGISTRY_INSECURE": "1"})
    assert Registry.from_config(opted).scheme == "http"
    with pytest.raises(ConfigError, match="CA bundle not found"):
        Registry.from_config(config.load(path, env={"IMAGEKIT_REGISTRY_CA_BUNDLE": "/nope.pem"}))


def test_credentials_come_from_the_docker_config_when_no_setting_names_them(harbor, tmp_path, monkeypatch):
    host, seen = harbor
    (tmp_path / "config.json").write_text(json.dumps(
        {"auths": {host: {"auth": base64.b64encode(f"{ROBOT}:{SECRET}".encode()).decode()}}}))
    monkeypatch.setenv("DOCKER_CONFIG", str(tmp_path))
    assert Registry(host=host, scheme="http").tags("mlops-desa/ray") == ["v1", "v2"]
    assert seen[-1][0] == f"{ROBOT}:{SECRET}"
    (tmp_path / "config.json").write_text(json.dumps({"auths": {}}))  # and without them: refused, said how
    with pytest.raises(RegistryError, match="token service .* refused repository:mlops-desa/ray:pull"):
        Registry(host=host, scheme="http").tags("mlops-desa/ray")


@pytest.fixture
def oci11():
    """An in-memory registry with the OCI 1.1 referrers API (like Harbor 2.8+ or zot): manifests
    with a subject are indexed by it and answered with an OCI-Subject header."""
    blobs, manifests, tags, referrers, uploads = {}, {}, {}, {}, []

    class Handler(http.server.BaseHTTPRequestHandler):
        def log_message(self, *args):
            pass

        def _send(self, code, body=b"", headers=None):
            self.send_response(code)
            for k, v in (headers or {}).items():
                self.send_header(k, v)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def _body(self):
            return self.rfile.read(int(self.headers.get("Content-Length") or 0))

        def do_HEAD(self):
            self._send(200 if self.path.rsplit("/", 1)[1] in blobs else 404)

        def do_GET(self):
            parts, ref = self.path.split("?")[0].split("/"), self.path.split("?")[0].rsplit("/", 1)[1]
            if "referrers" in parts:
                index = {"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": referrers.get(ref, [])}
                return self._send(200, json.dumps(index).encode(), {"Content-Type": OCI_INDEX})
            if "blobs" in parts:
                return self._send(200, blobs[ref]) if ref in blobs else self._send(404)
            found = manifests.get(tags.get(ref, ref))
            if found is None:
                return self._send(404, b'{"errors": [{"code": "MANIFEST_UNKNOWN"}]}')
            self._send(200, found[1], {"Content-Type": found[0]})

        def do_POST(self):
            uploads.append(b"")
            self._send(202, headers={"Location": f"/upload/{len(uploads) - 1}"})

        def do_PATCH(self):
            n = int(self.path.split("/")[2])
            uploads[n] += self._body()
            self._send(202, headers={"Location": f"/upload/{n}"})

        def do_PUT(self):
            body = self._body()
            if self.path.startswith("/upload/"):
                blobs[self.path.split("digest=")[1].replace("%3A", ":")] = uploads[int(self.path.split("/")[2].split("?")[0])]
                return self._send(201)
            manifest = Manifest(digests.oci(body), self.headers["Content-Type"], body)
            manifests[manifest.digest] = (manifest.media_type, body)
            ref = self.path.rsplit("/", 1)[1]
            if not ref.startswith("sha256:"):
                tags[ref] = manifest.digest
            headers = {"Docker-Content-Digest": manifest.digest}
            if manifest.subject:
                referrers.setdefault(manifest.subject, []).append(manifest.descriptor())
                headers["OCI-Subject"] = manifest.subject
            self._send(201, headers=headers)

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield Registry(host=f"127.0.0.1:{server.server_address[1]}", scheme="http"), tags
    server.shutdown()


def test_attestations_use_the_referrers_api_where_the_registry_has_it(oci11, tmp_path):
    reg, tags = oci11
    key, pub = make_keys(tmp_path)
    digest = seed_image(reg, "mlops-desa/ray", "v1", layers=1, verified=key)
    assert list(tags) == ["v1", record.att_tag(digest)]  # no fallback index: the registry indexed the bundle itself
    found = record.verdicts(reg, "mlops-desa/ray", digest, attest.load_public(str(pub)))
    assert {f.layout: verdict.images for f, verdict in found} == {record.BUNDLE: {"ray": digest},
                                                                  record.ATT: {"ray": digest}}
