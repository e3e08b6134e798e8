#!/usr/bin/env python
# Stand-in for docker-stacks' start-singleuser.py: jupyterhub-singleuser with the arguments it was given.
import os
import shlex
import sys

command = ["jupyterhub-singleuser"]
if os.environ.get("NOTEBOOK_ARGS"):
    command += shlex.split(os.environ["NOTEBOOK_ARGS"])
command += sys.argv[1:]
os.execvp(command[0], command)
