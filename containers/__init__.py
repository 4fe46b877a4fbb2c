"""The one container entrypoint (`python -m containers.entrypoint <command>`) and the image definitions."""
