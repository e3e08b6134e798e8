# /opt/venv first for login shells too (bash -l: KubeRay's commands, JupyterLab terminals);
# Debian's /etc/profile resets PATH before this runs.
case ":$PATH:" in *:/opt/venv/bin:*) ;; *) PATH="/opt/venv/bin:$PATH" ;; esac
export PATH VIRTUAL_ENV=/opt/venv
