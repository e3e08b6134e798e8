"""The registry client's auth challenge and URL rules, against a fake Harbor on loopback."""
import base64
import http.server
import json
import threading

import pytest
from helpers import write_project

from imagekit import config
from imagekit.errors import ConfigError, RegistryError
from imagekit.registry import Registry

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
