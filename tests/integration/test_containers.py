"""Containers against the real engine: what the fake engine of tests/unit/test_containers.py cannot show."""
import threading

import docker.errors

from imagekit import services


def test_a_container_removed_from_two_threads_at_once_is_gone_when_either_returns(engine, base_image, run):
    """An interrupt's cleanup and a thread of the run removing the same container: the engine answers the
    second removal 409 at once, while the container (and its endpoint on the run's network) is still there."""
    for _ in range(5):  # the removals overlap almost every time here; five leave no doubt
        c = run.start(services.Idle(base_image))
        elsewhere = threading.Thread(target=c.remove)
        elsewhere.start()
        c.remove()
        try:
            engine.client.containers.get(c.c.id)
            left = True
        except docker.errors.NotFound:
            left = False
        elsewhere.join()
        assert not left, "remove() returned while the container was still there"
