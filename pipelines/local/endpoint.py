"""The local endpoint: the registered model served by the ``serve`` entrypoint on a loopback port.

One endpoint at a time, like one SageMaker endpoint per project; starting a new one stops the old,
unless the running server already serves what the new one would (``serving_key``): then only the
recorded version changes, and a repeated `mlops run --local` skips the ~20 s of loading a server.
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
from pipelines.local.processes import is_running
from pipelines.local.store import REPO_ROOT, copy_file
from training.errors import UserError
from training.files import UnreadableFile, read_json_object, write_json_atomic
from training.process_start import start_ticks

STATE = "endpoint.json"
SERVER_MARKER = b"containers.entrypoint"


def endpoint_dir(store_root: Path) -> Path:
    return store_root / "endpoint"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def server_alive(state: dict[str, Any]) -> bool:
    """True while the state's pid is still our server: a recycled pid (another process, or one that
    started at another time) counts as gone."""
    started = state.get("pid_started")
    return is_running(int(state["pid"]), SERVER_MARKER, int(started) if started is not None else None)


def _saved_state(store_root: Path) -> dict[str, Any] | None:
    """endpoint.json, or None when there is none. An unreadable one (a crash or a hand edit) is set
    aside as endpoint.json.unreadable and treated as no endpoint, with a clear note: it only records
    a pid, and a server we cannot identify is one we must not signal."""
    path = endpoint_dir(store_root) / STATE
    if not path.is_file():
        return None
    try:
        state = read_json_object(path)
        int(state["pid"])
    except (UnreadableFile, KeyError, TypeError, ValueError) as exc:
        aside = path.with_name(STATE + ".unreadable")
        path.replace(aside)
        why = exc.why if isinstance(exc, UnreadableFile) else "has no usable pid"
        print(
            f"warning: {path} {why}; moved it to {aside}. If a local server is still running, "
            "stop it by its pid (see serve.log beside it)",
            file=sys.stderr,
        )
        return None
    return state


def read_state(store_root: Path) -> dict[str, Any] | None:
    state = _saved_state(store_root)
    return state if state is not None and server_alive(state) else None


def _get(url: str, timeout: float = 5.0) -> int:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            return int(response.status)
    except urllib.error.HTTPError as exc:
        return int(exc.code)
    except (urllib.error.URLError, OSError):
        return 0


SERVER_DISTRIBUTIONS = ("torch", "transformers", "tokenizers", "fastapi", "uvicorn")


def serving_key(model_archive: Path, model_name: str, env: dict[str, str]) -> str | None:
    """What a server started now would serve, and with what: the archive (its path, size and mtime), the
    model name, its environment (``env``, without the port), this interpreter and the server's packages,
    and the code and config the ``serve`` entrypoint would load from disk now (containers/, inference/,
    training/, config/: the definition cache's folders). None when that cannot be read: no reuse."""
    from importlib.metadata import PackageNotFoundError, version

    from pipelines.definition.cache import sources_digest_now

    try:
        stat = model_archive.stat()
        code = sources_digest_now()
    except OSError:
        return None
    packages = []
    for name in SERVER_DISTRIBUTIONS:
        try:
            packages.append(f"{name}=={version(name)}")
        except PackageNotFoundError:
            packages.append(f"{name} absent")
    archive = [str(model_archive.resolve()), stat.st_size, stat.st_mtime_ns]
    return json.dumps([archive, model_name, sorted(env.items()), sys.executable, packages, code])


def _reusable(store_root: Path, key: str | None, port: int | None) -> dict[str, Any] | None:
    """The running endpoint's state when it serves exactly ``key`` on the asked port and answers /ping."""
    if key is None:
        return None
    state = read_state(store_root)
    if state is None or state.get("serving_key") != key or (port is not None and state.get("port") != port):
        return None
    return state if _get(str(state["url"]) + "/ping") == 200 else None


def start(
    store_root: Path,
    model_archive: Path,
    model_name: str,
    version: int,
    port: int | None = None,
    timeout: float = 300.0,
    reuse: bool = True,
) -> dict[str, Any]:
    """Serve ``model_archive`` (a model.tar.gz from the registry) and wait until /ping answers 200.

    With ``reuse``, a running server that serves the same archive with the same code, packages and
    environment keeps running: the state records the new version and ``reused: true``."""
    folder = endpoint_dir(store_root)
    opt_ml = OptMl(folder / "opt_ml")
    # The serving contract's environment, nothing else from this shell; the port is added below.
    base_env = job_environment(SERVING, {}, {}, opt_ml.root)
    key = serving_key(model_archive, model_name, base_env)
    running = _reusable(store_root, key, port) if reuse else None
    if running is not None:
        running.update(version=version, reused=True)
        write_json_atomic(folder / STATE, running)
        return running
    stop(store_root)
    if opt_ml.root.exists():
        shutil.rmtree(opt_ml.root)
    # SageMaker puts ModelDataUrl's archive into /opt/ml/model; serve extracts it there.
    copy_file(model_archive, opt_ml.model_dir / "model.tar.gz")
    port = port or free_port()
    log = folder / "serve.log"
    # SAGEMAKER_BIND_TO_PORT is the local port choice (SageMaker serves single containers on 8080;
    # several local endpoints cannot).
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
        "pid_started": start_ticks(proc.pid),
        "port": port,
        "url": url,
        "model": model_name,
        "version": version,
        "artifact": str(model_archive),
        "log": str(log),
        "started": time.time(),
        "serving_key": key,
    }
    # Written before waiting: whatever happens next, `mlops endpoint stop --local` can find the server.
    write_json_atomic(folder / STATE, state)
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
    """SIGTERM the endpoint and wait. Returns its state with ``was_running``: False when the recorded
    server had already exited (or its pid now belongs to another process, which is left alone);
    None when there was no endpoint at all."""
    path = endpoint_dir(store_root) / STATE
    state = _saved_state(store_root)
    if state is None:
        return None
    pid = int(state["pid"])
    state["was_running"] = server_alive(state)
    if state["was_running"]:
        os.kill(pid, signal.SIGTERM)
        deadline = time.time() + timeout
        while server_alive(state) and time.time() < deadline:
            try:  # our own child: reap it so it does not linger as a zombie
                os.waitpid(pid, os.WNOHANG)
            except ChildProcessError:
                pass
            time.sleep(0.2)
        if server_alive(state):
            os.kill(pid, signal.SIGKILL)
    path.unlink(missing_ok=True)
    return state
