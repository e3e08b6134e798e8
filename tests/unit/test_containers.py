"""The one way containers are started (a fake engine: no Docker needed here; tests/integration run them):
what a wait says, what a container that exited says, and that every container of a run is removed."""
import threading

import docker.errors
import pytest
import requests

from imagekit import containers, inimage, runtime, services, wait
from imagekit.errors import EngineError, PreconditionError


class Fake:
    """A docker-py container that fails its wait as asked."""

    def __init__(self, raised=None, status="running", code=0, logs=b""):
        self.raised, self.status, self.attrs, self._logs = raised, status, {"State": {"ExitCode": code}}, logs
        self.removed, self.ports = False, {}

    def wait(self, timeout):
        raise self.raised

    def reload(self):
        pass

    def logs(self, tail=None):
        return self._logs

    def remove(self, force=False):
        self.removed = True


def container(fake) -> containers.Container:
    c = containers.Container("imagekit-test/x:1", ["serve", "run"])
    c.c = fake
    return c


def test_a_wait_says_a_timeout_only_when_it_was_one():
    with pytest.raises(EngineError, match="did not finish within 5 s"):
        container(Fake(requests.exceptions.ReadTimeout("read timed out"))).wait(5)
    with pytest.raises(EngineError) as e:  # the engine itself failing is said as the engine said it
        container(Fake(docker.errors.APIError("500", explanation="the engine restarted"))).wait(5)
    assert "the engine restarted" in str(e.value) and "did not finish" not in str(e.value)


def test_a_container_that_exited_says_its_code_and_last_lines_and_a_wait_on_it_stops_at_once():
    c = container(Fake(status="exited", code=3, logs=b"starting\nserve: no model server in this image\n"))
    assert c.exited() == "exited at start (exit code 3): serve: no model server in this image"
    with pytest.raises(wait.NotReady) as e:
        wait.until("the model server", lambda: None, 600, gone=c.exited)
    assert e.value.seconds < 1 and "exit code 3" in e.value.message


def test_a_model_server_that_exited_before_its_port_was_asked_names_what_the_image_lacks():
    server = services.ModelServer("imagekit-test/ray:1", {}, {})
    server.c = Fake(status="exited", code=1, logs=b"imagekit: this image has no ray[serve] (ModuleNotFoundError)\n")
    with pytest.raises(PreconditionError, match=r"^the Ray image imagekit-test/ray:1 cannot serve models with Ray "
                                                r"Serve: this image has no ray\[serve\]"):
        server.ready(600)


def test_a_wait_names_what_it_waited_for_and_the_last_thing_it_saw_and_lets_bugs_through():
    with pytest.raises(wait.NotReady) as e:
        wait.until("the S3 server", lambda: wait.Pending("HTTP 503 starting"), 0.2, every=0.05)
    assert e.value.message == f"the S3 server did not come within {e.value.seconds:.0f} s; last seen: HTTP 503 starting"
    with pytest.raises(KeyError):  # only what it is told to retry is "not yet"
        wait.until("x", lambda: {}["missing"], 5, retry=(ConnectionError,))


def test_every_container_of_a_run_is_removed_when_it_ends_also_one_it_never_heard_of():
    """An interrupt during the engine's answer to a create: the container exists, the run has no handle
    on it; its label (the run's part) finds it."""
    made_while_cut_short = Fake()

    class Engine:
        class client:
            class networks:
                made = []

                @classmethod
                def create(cls, name, labels):
                    network = Fake()
                    network.name, network.labels = name, labels
                    cls.made.append(network)
                    return network

                @classmethod
                def list(cls, filters):
                    return [n for n in cls.made if f"{containers.PART_LABEL}={n.labels[containers.PART_LABEL]}"
                            == filters["label"]]

            class containers:
                @staticmethod
                def list(all, filters):
                    return [made_while_cut_short] if filters["label"].startswith(containers.PART_LABEL) else []

    with pytest.raises(KeyboardInterrupt):
        with containers.Run(Engine(), "test") as run:
            run.containers += [container(Fake()), container(Fake())]
            raise KeyboardInterrupt
    assert all(c.c.removed for c in run.containers) and made_while_cut_short.removed
    assert Engine.client.networks.made[0].removed
    assert run.close() == f"2 container(s) (container, container) and network {run.name}"


@pytest.mark.parametrize("entrypoint, through", [
    (None, []),
    (["/usr/bin/tini", "--"], []),
    (["tini", "-g", "--", "start.sh"], ["start.sh"]),  # docker-stacks: start.sh runs the hooks
    (["dumb-init", "/docker-entrypoint.sh"], ["/docker-entrypoint.sh"]),
    (["/entrypoint.sh", "--verbose"], ["/entrypoint.sh", "--verbose"]),
])
def test_an_exec_goes_through_the_images_entrypoint_without_its_init(entrypoint, through):
    assert inimage.entrypoint({"Entrypoint": entrypoint}) == through


def test_the_images_python_is_found_on_path_and_the_code_first_on_pythonpath():
    cmd = inimage.python("-m", "stored_check", "--out", "x", path=inimage.SERVING_IN)
    assert cmd[:2] == ["sh", "-c"] and cmd[3:] == ["imagekit", "-m", "stored_check", "--out", "x"]
    assert "command -v python || command -v python3" in cmd[2] and f"PYTHONPATH={inimage.SERVING_IN}" in cmd[2]
    assert sorted(inimage.serving()) == sorted(f"{inimage.SERVING_IN}/{n}" for n in (
        "lakemodel.py", "mlflowcheck.py", "model_server.py", "modelcheck.py", "serve.yaml", "stored_check.py"))


def test_an_entrypoint_that_runs_nothing_is_named_with_what_it_said():
    why = inimage.ran_nothing("team/nb:v8", {"Entrypoint": ["tini", "--", "start.sh"]}, "starting\n")
    assert why == ("the image team/nb:v8 has an entrypoint (tini -- start.sh) that ran without running the command "
                   "it was given (starting)")


class Client:
    """A lifecycle client whose notebook runs answer, in turn, with ``outputs``: (exit code, output)."""

    def __init__(self, *outputs):
        self.outputs, self.runs, self.stopped = list(outputs), 0, threading.Event()

    def sh(self, script):
        if "NotebookClient" not in script:
            if script.startswith("kill"):
                self.stopped.set()
            return 0, ""
        self.runs += 1
        code, output = self.outputs.pop(0)
        if code == 143:  # a run that ends only when it is stopped
            assert self.stopped.wait(5)
        return code, output

    def put(self, path, body):
        pass


PROXY = ("ConnectionAbortedError: Initialization failure from server:\nRuntimeError: Proxy failed to Connect to "
         "backend! Check `ray_client_server.err` on the head node of the cluster for the relevant logs.")
SAME = '{"same": true, "detail": "10 rows, labels equal"}'
MISMATCH = """Cell In[2], line 1
----> 1 ray.init(os.environ.get("RAY_ADDRESS", "ray://ray-head:10001"), logging_level="ERROR")
File /opt/venv/lib/python3.11/site-packages/ray/_private/worker.py:1397, in init(address, **kwargs)
-> 1397     ctx = builder.connect()
RuntimeError: Version mismatch: The cluster was started with Ray 2.40.0"""


class Head(services.RayNode):
    """A head whose log, read by the watch of its Ray Client, shows a client's server that died (``died``) or
    not: the watch then ends only when told to."""

    def __init__(self, died=False):
        super().__init__("ray")
        self.died, self.stopped = died, threading.Event()

    def exec(self, cmd, **kw):
        if "touch" in cmd[-1]:  # the watch told to stop
            self.stopped.set()
            return 0, ""
        if cmd[-1] == services.DIED_SAID:
            return 0, "OSError: [Errno 98] Address in use\n"
        if self.died:
            self.died = False  # only the first run's
            return 0, ""
        assert self.stopped.wait(5)
        self.stopped.clear()
        return 143, ""


@pytest.mark.parametrize("runs, died, ok, said", [
    ([(1, PROXY), (0, SAME)], False, True, "10 rows, labels equal"),  # the proxier could not reach its server
    ([(143, "Terminated"), (0, SAME)], True, True, "10 rows, labels equal"),  # the head's log said it first
    ([(1, PROXY)] * 3, False, False, "the head's Ray Client server did not start for it in 3 tries (Proxy failed"),
    ([(1, MISMATCH)], False, False,  # said at once, not run again, with the cell it ran
     "Version mismatch: The cluster was started with Ray 2.40.0 (at Cell In[2], line 1: ray.init(os.environ"),
])
def test_a_lifecycle_notebook_runs_again_only_when_the_heads_client_server_did_not_start(tmp_path, runs, died, ok,
                                                                                          said):
    (tmp_path / "iris-to-ray.ipynb").write_text("{}")
    client, lines = Client(*runs), []
    item = runtime.lifecycle(client, Head(died), tmp_path, lines.append)
    assert client.runs == len(runs) and item.ok is ok and said in item.detail, item.detail
    assert client.stopped.is_set() is died  # stopped only when the head's log said its server died
    if died:  # and the line its server wrote as it died is said with it
        assert "(SpecificServer startup failed: OSError: [Errno 98] Address in use): running it again (2 of 3)" in \
            lines[-1]


def test_an_interrupt_during_a_create_is_raised_once_the_engine_answered():
    import os
    import signal

    from imagekit.interrupts import held_back

    class Terminated(Exception):
        pass

    def terminate(*_):
        raise Terminated

    before, done = signal.signal(signal.SIGTERM, terminate), []
    ctrl_c = signal.signal(signal.SIGINT, signal.default_int_handler)  # Python's own, whatever ran before
    try:
        with pytest.raises(Terminated):
            with held_back():
                os.kill(os.getpid(), signal.SIGTERM)  # what a cancelled CI job sends mid-create
                os.kill(os.getpid(), signal.SIGINT)  # and a Ctrl-C after it: one interrupt is raised, the first
                done.append("the engine answered")
        assert done == ["the engine answered"] and signal.getsignal(signal.SIGTERM) is terminate
        with pytest.raises(KeyboardInterrupt):  # the Ctrl-C handler set back too
            with held_back():
                os.kill(os.getpid(), signal.SIGINT)
    finally:
        signal.signal(signal.SIGTERM, before)
        signal.signal(signal.SIGINT, ctrl_c)
