"""A real JupyterHub for `imagekit runtime-check`, run inside the notebook image; with ``--check``
this file is also the client that spawns the user's server and asks it for its API.

The hub: dummy authenticator, the simple local spawner (the single-user server runs in this
container with the environment a spawner gives it: JUPYTERHUB_API_TOKEN,
JUPYTERHUB_SERVICE_PREFIX, JUPYTERHUB_API_URL, ...; KubeSpawner gives the same from Spawner.get_env),
and a proxy of its own, since configurable-http-proxy (node) is not part of a single-user image:
routes kept in memory and served on the public port (0.0.0.0:8000) by a small tornado forwarder,
HTTP and WebSocket (the kernels' channels), so a browser logs in and opens JupyterLab through the
hub as it does behind the chart's proxy. The API check talks to the server at its route's target.
The service token comes from the environment.
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
SLOW_SPAWN = 10  # seconds the hub waits for a spawn before it answers 202 (its default, said here)

if "c" in globals():  # loaded by jupyterhub -f
    from jupyterhub.proxy import Proxy
    from tornado import httpclient, web, websocket

    PUBLIC_PORT = 8000
    HOP_BY_HOP = {"content-length", "transfer-encoding", "connection", "keep-alive", "upgrade"}

    class Forward(websocket.WebSocketHandler):
        """Forward a request to the route with the longest matching prefix: plain HTTP, or a
        WebSocket relayed message by message. The Host and Origin headers pass unchanged, so the
        hub's and the server's origin checks see what the browser sent."""

        def initialize(self, routes):
            self.routes, self.upstream = routes, None

        def target(self):
            path = self.request.path if self.request.path.endswith("/") else self.request.path + "/"
            spec = max((s for s in self.routes if path.startswith(s)), key=len, default=None)
            if spec is None:
                raise web.HTTPError(404, "no route")
            return self.routes[spec]["target"].rstrip("/") + self.request.uri

        async def get(self, *args):
            if self.request.headers.get("Upgrade", "").lower() == "websocket":
                return await super().get(*args)
            await self.forward()

        async def forward(self, *args):
            method = self.request.method
            request = httpclient.HTTPRequest(
                self.target(), method=method, headers=self.request.headers, follow_redirects=False,
                body=self.request.body if method in ("POST", "PUT", "PATCH") else None,
                decompress_response=False, allow_nonstandard_methods=True, request_timeout=300)
            r = await httpclient.AsyncHTTPClient().fetch(request, raise_error=False)
            if r.code == 599:
                raise web.HTTPError(503, f"upstream: {r.error}")
            self.set_status(r.code, r.reason)
            for name in ("Content-Type", "Server", "Date"):
                self.clear_header(name)
            for name, value in r.headers.get_all():
                if name.lower() not in HOP_BY_HOP:
                    self.add_header(name, value)
            if r.body and r.code not in (204, 304):
                self.write(r.body)

        post = put = patch = delete = head = options = forward

        def select_subprotocol(self, subprotocols):
            return subprotocols[0] if subprotocols else None

        async def open(self, *args):
            headers = {k: v for k, v in self.request.headers.get_all()
                       if k.lower() in ("cookie", "authorization", "origin", "host", "user-agent")}
            protocols = [self.selected_subprotocol] if self.selected_subprotocol else None
            self.upstream = await websocket.websocket_connect(
                httpclient.HTTPRequest("ws" + self.target()[4:], headers=headers),
                on_message_callback=self.down, subprotocols=protocols)

        def down(self, message):
            if message is None:
                self.close()
            else:
                self.write_message(message, binary=isinstance(message, bytes))

        def on_message(self, message):
            if self.upstream is not None:
                self.upstream.write_message(message, binary=isinstance(message, bytes))

        def on_close(self):
            if self.upstream is not None:
                self.upstream.close()

    class MemoryProxy(Proxy):
        """Routes kept in memory, served by Forward on the public port."""
        routes: dict = {}
        server = None

        async def start(self):
            self.server = web.Application([(r".*", Forward, {"routes": self.routes})]).listen(PUBLIC_PORT, "0.0.0.0")

        async def stop(self):
            if self.server is not None:
                self.server.stop()

        async def check_running(self):
            pass

        async def add_route(self, routespec, target, data):
            self.routes[routespec] = {"routespec": routespec, "target": target, "data": data}

        async def delete_route(self, routespec):
            self.routes.pop(routespec, None)

        async def get_all_routes(self):
            return dict(self.routes)

    c = get_config()  # noqa: F821 - provided by traitlets when jupyterhub loads this file
    c.JupyterHub.proxy_class = MemoryProxy
    c.JupyterHub.ip, c.JupyterHub.port = "0.0.0.0", PUBLIC_PORT
    c.JupyterHub.hub_ip, c.JupyterHub.hub_port = "127.0.0.1", 8081
    c.JupyterHub.authenticator_class = "dummy"
    c.Authenticator.allowed_users = {USER}
    c.JupyterHub.spawner_class = "simple"
    c.JupyterHub.slow_spawn_timeout = SLOW_SPAWN
    c.SimpleLocalProcessSpawner.home_dir_template = "/home/{username}"
    c.Spawner.ip = "127.0.0.1"
    c.JupyterHub.services = [{"name": "imagekit", "api_token": TOKEN}]
    c.JupyterHub.load_roles = [{"name": "imagekit", "services": ["imagekit"],
                                "scopes": ["admin:users", "admin:servers", "tokens", "proxy", "list:users"]}]


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args, **kwargs):
        return None


def call(method, url, token=TOKEN, body=None, timeout=10):
    headers = {"Authorization": f"token {token}"} if token else {}
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(url, method=method, data=data, headers=headers)
    try:
        with urllib.request.build_opener(_NoRedirect).open(request, timeout=timeout) as r:
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
    # the hub answers a spawn once the server is up or after its slow_spawn_timeout (10 s): wait beyond that
    code, body = call("POST", f"{API}/users/{USER}/server", timeout=SLOW_SPAWN + 50)
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
