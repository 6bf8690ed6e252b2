"""Request overhead of the OpenAI-compatible endpoint against the same generation called in-process.

Goal (issue 16): under 5 ms per request. The API server runs as its own process (`python -m api`) on a free
loopback port over a temporary registry; this process calls `services.serving.stream_completion` for the
in-process figure, and for the HTTP ones a plain `httpx` client (the endpoint's own cost) and the official
`openai` client (what an application sees; the client library adds its own CPU time), non-streamed and streamed,
round-robin, so a change in machine load hits every variant. Greedy decoding of a fixed number of tokens makes every
request the same generation. By default one token of the tiny model, so generation costs a few ms and the
overhead is not buried in its noise; both processes use one torch thread. Overhead = the median of the paired
differences (each round's HTTP time minus the same round's in-process time), with their interquartile range.
The client keeps one connection open (as an application's client does), so no request pays a TCP handshake.
Wall time on a shared machine includes waiting for a CPU at every hand-over (client -> server -> worker thread ->
back), so the CPU time each variant costs is printed too (this process's, plus the server's from
/proc/<pid>/stat): the part of the overhead the code itself spends, which the machine's load does not change.
Run (about a minute): `PYTHONPATH=. .venv/bin/python bench/openai_overhead.py [--requests 60] [--tokens 1]`;
`--model embedded --tokens 16` measures on SmolLM2-135M.
"""

import argparse
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

PROMPT = "Map field 'adType' with value 'sp' from Amazon to RMIS."


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def cpu_ms(pid: int) -> float:
    """CPU time (user + system) a process has used, in ms; Linux counts it in clock ticks, so only sums over
    many requests are meaningful."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) * 1000 / os.sysconf("SC_CLK_TCK")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--model", choices=["tiny", "embedded"], default="tiny")
    parser.add_argument("--requests", type=int, default=60)
    parser.add_argument("--tokens", type=int, default=1)
    args = parser.parse_args()
    wall = time.perf_counter()
    root = Path(tempfile.mkdtemp(prefix="rmn-openai-bench-"))
    os.environ["RMN_LORA_HOME"] = str(root / "registry")
    if args.model == "tiny":
        from tests.tiny_model import build_tiny_model

        build_tiny_model(root / "models" / "tiny-llama")
        os.environ["RMN_LORA_MODELS"] = str(root / "models")
        model = "tiny-llama"
    else:
        from training.embedded_model import MODEL_NAME

        model = MODEL_NAME

    import httpx
    import openai
    import torch

    torch.set_num_threads(1)

    from services.federation import GenerationSettings
    from services.serving import stream_completion

    port = free_port()
    server = subprocess.Popen(
        [sys.executable, "-m", "api", "--port", str(port)],
        env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1]), "OMP_NUM_THREADS": "1"},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        client = openai.OpenAI(base_url=f"http://127.0.0.1:{port}/v1", api_key="unused", max_retries=0)
        plain = httpx.Client(base_url=f"http://127.0.0.1:{port}/v1", timeout=600)
        deadline = time.monotonic() + 120
        while True:
            try:
                client.models.list()
                break
            except openai.APIConnectionError:
                if time.monotonic() > deadline or server.poll() is not None:
                    raise SystemExit("the API server did not start") from None
                time.sleep(0.2)
        settings = GenerationSettings(max_new_tokens=args.tokens)
        messages = [{"role": "user", "content": PROMPT}]

        def in_process() -> str:
            return "".join(stream_completion(model, PROMPT, settings))

        def httpx_post() -> str:
            body = {"model": model, "messages": messages, "max_tokens": args.tokens}
            return plain.post("/chat/completions", json=body).json()["choices"][0]["message"]["content"]

        def http() -> str:
            return (
                client.chat.completions.create(model=model, messages=messages, max_tokens=args.tokens)
                .choices[0]
                .message.content
            )

        def http_stream() -> str:
            chunks = client.chat.completions.create(model=model, messages=messages, max_tokens=args.tokens, stream=True)
            return "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)

        variants = {
            "in-process": in_process,
            "HTTP (httpx)": httpx_post,
            "HTTP (openai)": http,
            "streamed (openai)": http_stream,
        }
        answers = {name: call() for name, call in variants.items()}  # warm-up: loads the model in both processes
        assert len({a.strip() for a in answers.values()}) == 1, f"the variants must generate the same text: {answers}"
        times: dict[str, list[float]] = {name: [] for name in variants}
        cpu = {name: [0.0, 0.0] for name in variants}  # [this process, the server]
        for _ in range(args.requests):
            for name, call in variants.items():
                server_cpu, own_cpu = cpu_ms(server.pid), time.process_time()
                started = time.perf_counter()
                call()
                times[name].append((time.perf_counter() - started) * 1000)
                cpu[name][0] += (time.process_time() - own_cpu) * 1000
                cpu[name][1] += cpu_ms(server.pid) - server_cpu
    finally:
        server.terminate()
        server.wait(timeout=60)

    reference = times["in-process"]
    client = {name: own / args.requests for name, (own, _) in cpu.items()}
    served = {name: theirs / args.requests for name, (_, theirs) in cpu.items()}
    print(f"model {model}, {args.tokens} token(s) greedy, {args.requests} requests each, round-robin, 1 thread")
    for name, values in times.items():
        line = f"{name:>17}: median {statistics.median(values):8.2f} ms, best {min(values):8.2f} ms, CPU (bench + server) {client[name]:5.2f} + {served[name]:5.2f} ms"
        if name != "in-process":
            paired = [h - r for h, r in zip(values, reference, strict=True)]
            q1, _, q3 = statistics.quantiles(paired, n=4)
            median = statistics.median(paired)
            line += (
                f", overhead {median:+6.2f} ms (IQR {q1:+.2f} .. {q3:+.2f}) -> {'met' if median < 5 else 'NOT met'}"
                f"; CPU overhead {client[name] + served[name] - client['in-process'] - served['in-process']:+.2f} ms"
            )
        print(line)
    load = ", ".join(f"{x:.2f}" for x in os.getloadavg())
    print(f"goal: overhead < 5 ms per request; load average {load}; wall time {time.perf_counter() - wall:.0f} s")


if __name__ == "__main__":
    main()
