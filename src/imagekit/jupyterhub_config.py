"""A real JupyterHub for `imagekit runtime-check`, run inside the notebook image; with ``--check``
this file is also the client that spawns the user's server and asks it for its API.

The hub: dummy authenticator, the simple local spawner (the single-user server runs in this
container with the environment a spawner gives it: JUPYTERHUB_API_TOKEN,
JUPYTERHUB_SERVICE_PREFIX, JUPYTERHUB_API_URL, ...; KubeSpawner gives the same from Spawner.get_env),
and an in-memory proxy, since configurable-http-proxy (node) is not part of a single-user image:
the check talks to the server at its route's target. The service token comes from the environment.
"""
import json
import os
import sys
import time
import urllib.error
import urllib.request

TOKEN = os.environ["IMAGEKIT_HUB_TOKEN"]
API = "http://127.0.0.1:8081/hub/api"
USER = "jovyan"

if "c" in globals():  # loaded by jupyterhub -f
    from jupyterhub.proxy import Proxy

    class MemoryProxy(Proxy):
        """Routes kept in memory; nothing to start."""
        should_start = False
        routes: dict = {}

        async def add_route(self, routespec, target, data):
            self.routes[routespec] = {"routespec": routespec, "target": target, "data": data}

        async def delete_route(self, routespec):
            self.routes.pop(routespec, None)

        async def get_all_routes(self):
            return dict(self.routes)

    c = get_config()  # noqa: F821 - provided by traitlets when jupyterhub loads this file
    c.JupyterHub.proxy_class = MemoryProxy
    c.JupyterHub.ip, c.JupyterHub.port = "127.0.0.1", 8000
    c.JupyterHub.hub_ip, c.JupyterHub.hub_port = "127.0.0.1", 8081
    c.JupyterHub.authenticator_class = "dummy"
    c.Authenticator.allowed_users = {USER}
    c.JupyterHub.spawner_class = "simple"
    c.SimpleLocalProcessSpawner.home_dir_template = "/home/{username}"
    c.Spawner.ip = "127.0.0.1"
    c.JupyterHub.services = [{"name": "imagekit", "api_token": TOKEN}]
    c.JupyterHub.load_roles = [{"name": "imagekit", "services": ["imagekit"],
                                "scopes": ["admin:users", "admin:servers", "tokens", "proxy", "list:users"]}]


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args, **kwargs):
        return None


def call(method, url, token=TOKEN, body=None):
    headers = {"Authorization": f"token {token}"} if token else {}
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(url, method=method, data=data, headers=headers)
    try:
        with urllib.request.build_opener(_NoRedirect).open(request, timeout=10) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()
    except OSError as e:
        return 0, str(e).encode()


def until(what, fn, timeout):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = fn()
        if found:
            return found
        time.sleep(1)
    sys.exit(f"timed out waiting for {what}")


def check():
    until("the hub's API", lambda: call("GET", API + "/")[0] == 200, 90)
    call("POST", f"{API}/users/{USER}")
    code, body = call("POST", f"{API}/users/{USER}/server")
    if code not in (201, 202):
        sys.exit(f"the hub refused to spawn: {code} {body[:300]!r}")
    until("the single-user server", lambda: json.loads(call("GET", f"{API}/users/{USER}")[1] or b"{}")
          .get("servers", {}).get("", {}).get("ready"), 120)
    routes = json.loads(call("GET", f"{API}/proxy")[1])
    prefix = f"/user/{USER}/"
    target = routes[prefix]["target"]
    _, body = call("POST", f"{API}/users/{USER}/tokens", body={"note": "imagekit runtime-check"})
    user_token = json.loads(body)["token"]
    env = set()
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                if b"jupyterhub-singleuser" not in f.read():
                    continue
            with open(f"/proc/{pid}/environ", "rb") as f:
                env |= {e.split(b"=", 1)[0].decode() for e in f.read().split(b"\0") if e.startswith(b"JUPYTERHUB_")}
        except OSError:
            continue
    print(json.dumps({"prefix": prefix, "target": target,
                      "with_token": call("GET", f"{target}{prefix}api/status", token=user_token)[0],
                      "without_token": call("GET", f"{target}{prefix}api/status", token="")[0],
                      "env": sorted(env)}))


if __name__ == "__main__" and "--check" in sys.argv:
    check()
