#!/usr/bin/env python
# Stand-in for docker-stacks' start-notebook.py: a single-user server when JupyterHub starts it, else JupyterLab.
import os
import shlex
import sys

if "JUPYTERHUB_API_TOKEN" in os.environ:
    os.execvp("/usr/local/bin/start-singleuser.py", ["/usr/local/bin/start-singleuser.py", *sys.argv[1:]])
command = ["jupyter", os.environ.get("DOCKER_STACKS_JUPYTER_CMD", "lab")]
if os.environ.get("NOTEBOOK_ARGS"):
    command += shlex.split(os.environ["NOTEBOOK_ARGS"])
command += sys.argv[1:]
os.execvp(command[0], command)
