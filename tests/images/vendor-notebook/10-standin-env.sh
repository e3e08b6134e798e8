# A before-notebook.d hook as teams write them: what the notebook environment needs, set before the command.
export STANDIN_HOOK_RAN=1
