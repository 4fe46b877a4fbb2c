"""Bounded load on loopback against the local server, next to sequential unbatched generation.

    .venv/bin/python bench/serve_load.py --model-dir .mlops/runs/<run-id>/model
    .venv/bin/python bench/serve_load.py --model-dir M --clients 1,8 --seconds 60 --json-out /tmp/serve.json

1. sequential: the same model loaded in this process, one prompt at a time (batch 1, greedy),
   for --seconds: the baseline a server without batching could at best reach.
2. server: `python -m containers.entrypoint serve` in a subprocess on a free loopback port; for each
   client count N, N threads send chat requests back to back for --seconds.

Prints p50/p99 latency, output tokens/s (usage.completion_tokens per wall second) and errors per
load, and the ratio to sequential. Prompts are the shipped validation questions, temperature 0,
max_tokens fixed. Target (issue 3): at 8 clients >= 2x sequential output tokens/s with zero errors;
the script exits 1 when it is missed. Not a timed test.
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


def load(base: str, clients: int, seconds: float, max_tokens: int) -> dict:
    import httpx

    conversations = _conversations()
    latencies: list[float] = []
    errors: list[str] = []
    tokens = [0]
    lock = threading.Lock()
    stop_at = time.perf_counter() + seconds

    def client(k: int) -> None:
        with httpx.Client(timeout=300) as http:
            j = k
            while time.perf_counter() < stop_at:
                body = {
                    "messages": conversations[j % len(conversations)],
                    "temperature": 0,
                    "max_tokens": max_tokens,
                }
                j += clients
                t0 = time.perf_counter()
                try:
                    r = http.post(f"{base}/invocations", json=body)
                    ok = r.status_code == 200
                    used = r.json()["usage"]["completion_tokens"] if ok else 0
                    problem = None if ok else f"{r.status_code} {r.text[:200]}"
                except httpx.HTTPError as exc:
                    used, problem = 0, f"{type(exc).__name__}: {exc}"
                with lock:
                    if problem:
                        errors.append(problem)
                    else:
                        latencies.append(time.perf_counter() - t0)
                        tokens[0] += used

    start = time.perf_counter()
    workers = [threading.Thread(target=client, args=(k,)) for k in range(clients)]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    wall = time.perf_counter() - start
    return {
        "load": f"server, {clients} client(s)",
        "clients": clients,
        "requests": len(latencies) + len(errors),
        "errors": len(errors),
        "error_samples": errors[:3],
        "output_tokens": tokens[0],
        "seconds": wall,
        "output_tokens_per_second": tokens[0] / wall,
        "p50_s": _percentile(latencies, 0.5),
        "p99_s": _percentile(latencies, 0.99),
    }


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(model_dir: Path, batch_size: int, threads: int) -> tuple[subprocess.Popen, str]:
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
        cwd=ROOT,
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
    p.add_argument("--json-out", type=Path)
    args = p.parse_args(argv)
    clients = [int(c) for c in args.clients.split(",") if c.strip()]

    print(
        f"model={args.model_dir} seconds={args.seconds} max_tokens={args.max_tokens} batch_size={args.batch_size} "
        f"threads={args.threads}",
        flush=True,
    )
    results = [sequential(args.model_dir, args.seconds, args.max_tokens, args.threads)]
    proc, base = start_server(args.model_dir, args.batch_size, args.threads)
    try:
        for n in clients:
            results.append(load(base, n, args.seconds, args.max_tokens))
    finally:
        proc.terminate()
        proc.wait(timeout=60)
    baseline = results[0]["output_tokens_per_second"]
    for r in results:
        r["ratio_to_sequential"] = r["output_tokens_per_second"] / baseline
        print(
            f"  {r['load']:22s} requests={r['requests']:5d} errors={r['errors']} p50={r['p50_s']:.3f}s "
            f"p99={r['p99_s']:.3f}s output_tokens_per_second={r['output_tokens_per_second']:.1f} "
            f"ratio={r['ratio_to_sequential']:.2f}x",
            flush=True,
        )
    if args.json_out:
        args.json_out.write_text(
            json.dumps({"args": {k: str(v) for k, v in vars(args).items()}, "results": results}, indent=2)
        )
    failed = []
    eight = [r for r in results if r.get("clients") == 8]
    if eight:
        if eight[0]["errors"]:
            failed.append(f"{eight[0]['errors']} errors at 8 clients: {eight[0]['error_samples']}")
        if eight[0]["ratio_to_sequential"] < 2.0:
            failed.append(
                f"8 clients reached {eight[0]['ratio_to_sequential']:.2f}x sequential, target >= 2x"
            )
    for f in failed:
        print(f"TARGET MISSED: {f}")
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
