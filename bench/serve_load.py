"""Bounded load on loopback against the local server, next to sequential unbatched generation.

    .venv/bin/python bench/serve_load.py --model-dir .mlops/runs/<run-id>/model
    .venv/bin/python bench/serve_load.py --model-dir M --clients 1,8 --seconds 60 --json-out /tmp/serve.json
    # side by side with an earlier server, in the same run:
    git worktree add /tmp/oldserve <commit> && \
      .venv/bin/python bench/serve_load.py --model-dir M --baseline-server /tmp/oldserve

1. sequential: the same model loaded in this process, one prompt at a time (batch 1, greedy),
   for --seconds: the baseline a server without batching could at best reach.
2. server: `python -m containers.entrypoint serve` in a subprocess on a free loopback port; for each
   client count N, N threads send chat requests back to back for --seconds. Then the same with
   `stream: true`: time to first token (TTFT) is the time until the first event that carries text.
3. With --baseline-server DIR, the same entrypoint from that checkout (run with this interpreter) is
   started too, and its plain loads alternate with this server's at every client count, so both see
   the same machine. A server that refuses `stream: true` gets no streaming row.

Prints p50/p99 latency (and TTFT), output tokens/s (usage.completion_tokens per wall second) and
errors per load, and the ratio to sequential. Prompts are the shipped validation questions,
temperature 0, max_tokens fixed. Targets (issue 17): at 8 clients >= 6x sequential output tokens/s,
p99 <= 2 s, streaming TTFT p99 <= 0.5 s, zero errors; the script exits 1 when one is missed.
Not a timed test.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
DATA = ROOT / "training/tasks/date_normalization/validation.jsonl"


def _conversations(limit: int = 200) -> list[list[dict[str, str]]]:
    from inference.evaluate import exact_match_cases
    from training.data import load_examples

    return [messages for messages, _, _ in exact_match_cases(load_examples(DATA).examples)][:limit]


def _percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q * (len(ordered) - 1))))]


def sequential(model_dir: Path, seconds: float, max_tokens: int, threads: int) -> dict:
    import torch

    from inference.generation import Shape, chat_prompt_ids, generate, load_for_inference

    torch.set_num_threads(threads)
    model, tok = load_for_inference(model_dir)
    prompts = [chat_prompt_ids(tok, m) for m in _conversations()]
    generate(model, tok, prompts[:1], Shape(1, len(prompts[0]), max_tokens))  # warm-up, not timed
    latencies, tokens, i = [], 0, 0
    start = time.perf_counter()
    while time.perf_counter() - start < seconds:
        p = prompts[i % len(prompts)]
        t0 = time.perf_counter()
        out = generate(model, tok, [p], Shape(1, len(p), max_tokens), fill_batch=False)[0]
        latencies.append(time.perf_counter() - t0)
        tokens += out.completion_tokens
        i += 1
    wall = time.perf_counter() - start
    return {
        "load": "sequential",
        "requests": i,
        "errors": 0,
        "output_tokens": tokens,
        "seconds": wall,
        "output_tokens_per_second": tokens / wall,
        "p50_s": _percentile(latencies, 0.5),
        "p99_s": _percentile(latencies, 0.99),
    }


def _one_request(http, base: str, body: dict) -> tuple[int, float | None, str | None]:  # noqa: ANN001
    """(completion tokens, seconds to the first text or None when not streaming, problem or None)."""
    if not body.get("stream"):
        r = http.post(f"{base}/invocations", json=body)
        if r.status_code != 200:
            return 0, None, f"{r.status_code} {r.text[:200]}"
        return r.json()["usage"]["completion_tokens"], None, None
    t0 = time.perf_counter()
    first: float | None = None
    used, done = 0, False
    with http.stream("POST", f"{base}/invocations", json=body) as r:
        if r.status_code != 200:
            return 0, None, f"{r.status_code} {r.read()[:200]!r}"
        for line in r.iter_lines():
            if not line.startswith("data: "):
                continue
            payload = line[len("data: ") :]
            if payload == "[DONE]":
                done = True
                break
            event = json.loads(payload)
            if "error" in event:
                return 0, None, f"error event: {event['error']}"
            delta = event["choices"][0]["delta"].get("content") if event["choices"] else None
            if first is None and (delta or (event["choices"] and event["choices"][0]["finish_reason"])):
                first = time.perf_counter() - t0
            if event.get("usage"):
                used = event["usage"]["completion_tokens"]
    if not done:
        return 0, None, "the stream ended without data: [DONE]"
    return used, first, None


def load(
    base: str, clients: int, seconds: float, max_tokens: int, stream: bool = False, label: str = "server"
) -> dict:
    import httpx

    conversations = _conversations()
    latencies: list[float] = []
    first_token: list[float] = []
    errors: list[str] = []
    tokens = [0]
    lock = threading.Lock()
    stop_at = time.perf_counter() + seconds

    def client(k: int) -> None:
        with httpx.Client(timeout=300) as http:
            j = k
            while time.perf_counter() < stop_at:
                body: dict = {
                    "messages": conversations[j % len(conversations)],
                    "temperature": 0,
                    "max_tokens": max_tokens,
                }
                if stream:
                    body |= {"stream": True, "stream_options": {"include_usage": True}}
                j += clients
                t0 = time.perf_counter()
                try:
                    used, ttft, problem = _one_request(http, base, body)
                except httpx.HTTPError as exc:
                    used, ttft, problem = 0, None, f"{type(exc).__name__}: {exc}"
                with lock:
                    if problem:
                        errors.append(problem)
                    else:
                        latencies.append(time.perf_counter() - t0)
                        tokens[0] += used
                        if ttft is not None:
                            first_token.append(ttft)

    start = time.perf_counter()
    workers = [threading.Thread(target=client, args=(k,)) for k in range(clients)]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    wall = time.perf_counter() - start
    return {
        "load": f"{label}, {clients} client(s){', streaming' if stream else ''}",
        "server": label,
        "clients": clients,
        "stream": stream,
        "requests": len(latencies) + len(errors),
        "errors": len(errors),
        "error_samples": errors[:3],
        "output_tokens": tokens[0],
        "seconds": wall,
        "output_tokens_per_second": tokens[0] / wall,
        "p50_s": _percentile(latencies, 0.5),
        "p99_s": _percentile(latencies, 0.99),
        "ttft_p50_s": _percentile(first_token, 0.5) if stream else None,
        "ttft_p99_s": _percentile(first_token, 0.99) if stream else None,
    }


def streams(base: str) -> bool:
    """Whether the server answers ``stream: true`` (an earlier one refused it with a 400)."""
    import httpx

    body = {"messages": [{"role": "user", "content": "hi"}], "max_tokens": 1, "stream": True}
    return httpx.post(f"{base}/invocations", json=body, timeout=120).status_code == 200


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(
    model_dir: Path, batch_size: int, threads: int, code_root: Path = ROOT
) -> tuple[subprocess.Popen, str]:
    """`serve` from ``code_root`` (this checkout, or --baseline-server's) on a free loopback port."""
    import httpx

    port = _free_port()
    env = dict(os.environ, OMP_NUM_THREADS=str(threads), TOKENIZERS_PARALLELISM="false")
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "containers.entrypoint",
            "serve",
            "--model-dir",
            str(model_dir),
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--batch-size",
            str(batch_size),
        ],
        cwd=code_root,  # `python -m` puts the working directory first on sys.path: that checkout's code runs
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    base = f"http://127.0.0.1:{port}"
    deadline = time.time() + 300
    while time.time() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"the server exited with {proc.returncode} before becoming ready")
        try:
            if httpx.get(f"{base}/ping").status_code == 200:
                return proc, base
        except httpx.TransportError:
            pass
        time.sleep(0.3)
    proc.kill()
    raise SystemExit("the server did not become ready in 300 s")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument(
        "--model-dir",
        type=Path,
        required=True,
        help="merged model folder (train's output) or compile --target cpu output",
    )
    p.add_argument("--clients", default="1,8", help="comma list of concurrent client counts")
    p.add_argument("--seconds", type=float, default=45.0, help="duration of each load")
    p.add_argument("--max-tokens", type=int, default=16)
    p.add_argument("--batch-size", type=int, default=8, help="server batch size")
    p.add_argument(
        "--threads", type=int, default=2, help="torch threads for the server and the sequential baseline"
    )
    p.add_argument(
        "--baseline-server",
        type=Path,
        help="a checkout of an earlier version (git worktree add DIR <commit>) whose server runs side by side",
    )
    p.add_argument("--json-out", type=Path)
    args = p.parse_args(argv)
    args.model_dir = args.model_dir.resolve()  # a baseline server runs in another working directory
    clients = [int(c) for c in args.clients.split(",") if c.strip()]

    print(
        f"model={args.model_dir} seconds={args.seconds} max_tokens={args.max_tokens} batch_size={args.batch_size} "
        f"threads={args.threads} baseline_server={args.baseline_server}",
        flush=True,
    )
    results = [sequential(args.model_dir, args.seconds, args.max_tokens, args.threads)]
    servers = {"server": ROOT} | ({"baseline server": args.baseline_server} if args.baseline_server else {})
    started: dict[str, tuple[subprocess.Popen, str]] = {}
    try:
        for label, root in servers.items():
            started[label] = start_server(args.model_dir, args.batch_size, args.threads, root)
        streaming = {label: streams(base) for label, (_, base) in started.items()}
        for n in clients:
            # Alternate the servers at each client count: both see the machine as it is then.
            for label, (_, base) in started.items():
                results.append(load(base, n, args.seconds, args.max_tokens, label=label))
            for label, (_, base) in started.items():
                if streaming[label]:
                    results.append(load(base, n, args.seconds, args.max_tokens, stream=True, label=label))
    finally:
        for proc, _ in started.values():
            proc.terminate()
            proc.wait(timeout=60)
    baseline = results[0]["output_tokens_per_second"]
    for r in results:
        r["ratio_to_sequential"] = r["output_tokens_per_second"] / baseline
        ttft = (
            f" ttft_p50={r['ttft_p50_s']:.3f}s ttft_p99={r['ttft_p99_s']:.3f}s"
            if r.get("ttft_p50_s") is not None
            else ""
        )
        print(
            f"  {r['load']:42s} requests={r['requests']:5d} errors={r['errors']} p50={r['p50_s']:.3f}s "
            f"p99={r['p99_s']:.3f}s{ttft} output_tokens_per_second={r['output_tokens_per_second']:.1f} "
            f"ratio={r['ratio_to_sequential']:.2f}x",
            flush=True,
        )
    if args.json_out:
        args.json_out.write_text(
            json.dumps({"args": {k: str(v) for k, v in vars(args).items()}, "results": results}, indent=2)
        )
    failed = []
    mine = [r for r in results if r.get("clients") == 8 and r.get("server") == "server"]
    for r in mine:
        if r["errors"]:
            failed.append(f"{r['errors']} errors in '{r['load']}': {r['error_samples']}")
    plain = [r for r in mine if not r["stream"]]
    if plain and plain[0]["ratio_to_sequential"] < 6.0:
        failed.append(f"8 clients reached {plain[0]['ratio_to_sequential']:.2f}x sequential, target >= 6x")
    if plain and plain[0]["p99_s"] > 2.0:
        failed.append(f"8 clients: p99 {plain[0]['p99_s']:.2f} s, target <= 2 s")
    streamed = [r for r in mine if r["stream"]]
    if streamed and streamed[0]["ttft_p99_s"] > 0.5:
        failed.append(f"8 streaming clients: TTFT p99 {streamed[0]['ttft_p99_s']:.2f} s, target <= 0.5 s")
    for f in failed:
        print(f"TARGET MISSED: {f}")
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
