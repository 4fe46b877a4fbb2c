"""The local endpoint: the registered model served by the ``serve`` entrypoint on a loopback port.

One endpoint at a time, like one SageMaker endpoint per project; starting a new one stops the old.
Its state (pid, port, model version) is in ``<store>/endpoint/endpoint.json`` and its log in
``<store>/endpoint/serve.log``. ``mlops endpoint stop --local`` sends SIGTERM, which the server
answers by draining in-flight requests and exiting 0.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from containers.contract import ENTRYPOINT, SERVING, OptMl, job_environment
from pipelines.local.store import REPO_ROOT, link_or_copy
from training.errors import UserError

STATE = "endpoint.json"


def endpoint_dir(store_root: Path) -> Path:
    return store_root / "endpoint"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def server_alive(pid: int) -> bool:
    """True while ``pid`` is our server: a recycled pid belonging to something else counts as gone."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return False
    cmdline = Path(f"/proc/{pid}/cmdline")
    if cmdline.exists():  # Linux: check it is still `containers.entrypoint serve`
        try:
            args = cmdline.read_bytes().split(b"\0")
        except OSError:
            return False
        return b"containers.entrypoint" in args and b"serve" in args
    return True


def read_state(store_root: Path) -> dict[str, Any] | None:
    path = endpoint_dir(store_root) / STATE
    if not path.is_file():
        return None
    state = json.loads(path.read_text())
    return state if server_alive(int(state["pid"])) else None


def _get(url: str, timeout: float = 5.0) -> int:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            return int(response.status)
    except urllib.error.HTTPError as exc:
        return int(exc.code)
    except (urllib.error.URLError, OSError):
        return 0


def start(
    store_root: Path,
    model_archive: Path,
    model_name: str,
    version: int,
    port: int | None = None,
    timeout: float = 300.0,
) -> dict[str, Any]:
    """Serve ``model_archive`` (a model.tar.gz from the registry) and wait until /ping answers 200."""
    stop(store_root)
    folder = endpoint_dir(store_root)
    opt_ml = OptMl(folder / "opt_ml")
    if opt_ml.root.exists():
        shutil.rmtree(opt_ml.root)
    # SageMaker puts ModelDataUrl's archive into /opt/ml/model; serve extracts it there.
    link_or_copy(model_archive, opt_ml.model_dir / "model.tar.gz")
    port = port or free_port()
    log = folder / "serve.log"
    # The serving contract's environment, nothing else from this shell. SAGEMAKER_BIND_TO_PORT is the
    # local port choice (SageMaker serves single containers on 8080; several local endpoints cannot).
    env = job_environment(SERVING, {"SAGEMAKER_BIND_TO_PORT": str(port)}, {}, opt_ml.root)
    # SageMaker starts an inference image as `<image> serve`; the image runs `python`, we run this interpreter.
    with open(log, "w") as out:
        proc = subprocess.Popen(
            [sys.executable, *ENTRYPOINT[1:], "serve", "--host", "127.0.0.1", "--model-name", model_name],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            cwd=REPO_ROOT,
            start_new_session=True,
        )
    url = f"http://127.0.0.1:{port}"
    state = {
        "pid": proc.pid,
        "port": port,
        "url": url,
        "model": model_name,
        "version": version,
        "artifact": str(model_archive),
        "log": str(log),
        "started": time.time(),
    }
    # Written before waiting: whatever happens next, `mlops endpoint stop --local` can find the server.
    (folder / STATE).write_text(json.dumps(state, indent=2) + "\n")
    deadline = time.time() + timeout
    try:
        while _get(url + "/ping") != 200:
            if proc.poll() is not None:
                tail = "".join(log.read_text().splitlines(True)[-15:])
                raise UserError(
                    f"the local endpoint exited with status {proc.returncode} while loading; log {log}:\n{tail}"
                )
            if time.time() > deadline:
                raise UserError(f"the local endpoint did not answer /ping within {timeout:.0f} s; log: {log}")
            time.sleep(0.5)
    except BaseException:
        stop(store_root)
        raise
    return state


def invoke(
    url: str, messages: list[dict[str, str]], max_tokens: int = 32, timeout: float = 120.0
) -> dict[str, Any]:
    body = json.dumps({"messages": messages, "max_tokens": max_tokens, "temperature": 0}).encode()
    request = urllib.request.Request(
        url + "/invocations", data=body, headers={"Content-Type": "application/json"}
    )
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return dict(json.loads(response.read()))
    except urllib.error.HTTPError as exc:
        raise UserError(
            f"the local endpoint answered {exc.code}: {exc.read().decode(errors='replace')[:500]}"
        ) from None
    except (urllib.error.URLError, OSError) as exc:
        raise UserError(f"the local endpoint at {url} did not answer the request: {exc}") from None


def stop(store_root: Path, timeout: float = 30.0) -> dict[str, Any] | None:
    """SIGTERM the endpoint and wait; None when none was running."""
    path = endpoint_dir(store_root) / STATE
    if not path.is_file():
        return None
    state = json.loads(path.read_text())
    pid = int(state["pid"])
    if server_alive(pid):
        os.kill(pid, signal.SIGTERM)
        deadline = time.time() + timeout
        while server_alive(pid) and time.time() < deadline:
            try:  # our own child: reap it so it does not linger as a zombie
                os.waitpid(pid, os.WNOHANG)
            except ChildProcessError:
                pass
            time.sleep(0.2)
        if server_alive(pid):
            os.kill(pid, signal.SIGKILL)
    path.unlink()
    return state
