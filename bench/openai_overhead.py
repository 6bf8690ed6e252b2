"""Request overhead of the OpenAI-compatible endpoint against the same generation called in-process.

Goal (issue 16): under 5 ms per request. The API server runs as its own process (`python -m api`) on a free
loopback port over a temporary registry; this process calls `services.serving.stream_completion` for the
in-process figure, and for the HTTP ones a plain `httpx` client and the official `openai` client, each whole and
streamed, round-robin, so a change in machine load hits every variant. Greedy decoding of a fixed number of tokens
makes every request the same generation. By default one token of the tiny model, so generation costs a few ms and
the overhead is not buried in its noise; both processes use one torch thread. Overhead = the median of the paired
differences (each round's HTTP time minus the same round's in-process time), with their interquartile range.
Each client keeps its connection open as an application's does, so no request pays a TCP handshake, unless the
client itself closes it: the `openai` client (sync) hangs up a stream at `[DONE]` without reading the body's end,
so each of its streamed requests connects anew ("connections" counts them, from the server's access log).

What the overhead (the round trip a caller sees) is made of, per variant:
- client: this process's CPU time during the call: the HTTP client library (building the request, parsing the
  answer into its objects; the `openai` client's pydantic objects cost ~1 ms more than httpx's dicts) and its
  HTTP/1.1 parsing and socket calls. It is the same in front of any server.
- endpoint: the round trip minus the client's CPU: the server (HTTP parsing, routing, validation, access check,
  the hand-over to a generating thread, encoding), the loopback and the waits for a CPU at each hand-over. This is
  the endpoint's own overhead; the goal is printed for it and for the whole round trip.
- server CPU over in-process: the server's CPU time per request (from /proc/<pid>/stat) beyond the same
  generation's CPU in-process, which the machine's load inflates less than wall time.
Run (about a minute): `PYTHONPATH=. .venv/bin/python bench/openai_overhead.py [--requests 60] [--tokens 1]`;
`--model embedded --tokens 16` measures on SmolLM2-135M.
"""

import argparse
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
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
    access_log = root / "server.log"
    with access_log.open("wb") as log:
        server = subprocess.Popen(
            [sys.executable, "-m", "api", "--port", str(port)],
            env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1]), "OMP_NUM_THREADS": "1"},
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    settings = GenerationSettings(max_new_tokens=args.tokens)
    messages = [{"role": "user", "content": PROMPT}]
    body = {"model": model, "messages": messages, "max_tokens": args.tokens}

    def openai_client() -> openai.OpenAI:
        return openai.OpenAI(base_url=f"http://127.0.0.1:{port}/v1", api_key="unused", max_retries=0)

    # One client per variant, so that each variant's connections are its own.
    plain = httpx.Client(base_url=f"http://127.0.0.1:{port}/v1", timeout=600)
    streamed_plain = httpx.Client(base_url=f"http://127.0.0.1:{port}/v1", timeout=600)
    client, streamed_client = openai_client(), openai_client()

    def httpx_post() -> str:
        return plain.post("/chat/completions", json=body).json()["choices"][0]["message"]["content"]

    def httpx_stream() -> str:
        pieces = []
        with streamed_plain.stream("POST", "/chat/completions", json={**body, "stream": True}) as response:
            for line in response.iter_lines():
                if line.startswith("data: {"):
                    event = json.loads(line.removeprefix("data: "))
                    pieces += [c["delta"].get("content") or "" for c in event["choices"]]
        return "".join(pieces)

    def openai_create() -> str:
        answer = client.chat.completions.create(model=model, messages=messages, max_tokens=args.tokens)
        return answer.choices[0].message.content or ""

    def openai_stream() -> str:
        chunks = streamed_client.chat.completions.create(
            model=model, messages=messages, max_tokens=args.tokens, stream=True
        )
        return "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)

    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                client.models.list()
                break
            except openai.APIConnectionError:
                if time.monotonic() > deadline or server.poll() is not None:
                    raise SystemExit("the API server did not start") from None
                time.sleep(0.2)

        def in_process() -> str:
            return "".join(stream_completion(model, PROMPT, settings))

        variants: dict[str, Callable[[], str]] = {
            "in-process": in_process,
            "HTTP (httpx)": httpx_post,
            "streamed (httpx)": httpx_stream,
            "HTTP (openai)": openai_create,
            "streamed (openai)": openai_stream,
        }
        answers = {name: call() for name, call in variants.items()}  # warm-up: loads the model in both processes
        assert len({a.strip() for a in answers.values()}) == 1, f"the variants must generate the same text: {answers}"
        warm_up_lines = len(_chat_ports(access_log))
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

    http_names = [name for name in variants if name != "in-process"]
    ports = _chat_ports(access_log)[warm_up_lines : warm_up_lines + args.requests * len(http_names)]
    connections = {name: len(set(ports[i :: len(http_names)])) for i, name in enumerate(http_names)}
    reference = times["in-process"]
    own = {name: mine / args.requests for name, (mine, _) in cpu.items()}
    served = {name: theirs / args.requests for name, (_, theirs) in cpu.items()}
    print(f"model {model}, {args.tokens} token(s) greedy, {args.requests} requests each, round-robin, 1 thread")
    print(f"{'in-process':>17}: median {statistics.median(reference):7.2f} ms, CPU {own['in-process']:5.2f} ms")
    verdicts = {"round trip": 0, "endpoint": 0}
    for name in http_names:
        paired = [h - r for h, r in zip(times[name], reference, strict=True)]
        q1, _, q3 = statistics.quantiles(paired, n=4)
        overhead = statistics.median(paired)
        endpoint = overhead - own[name]
        verdicts["round trip"] += overhead < 5
        verdicts["endpoint"] += endpoint < 5
        print(
            f"{name:>17}: round trip {overhead:+6.2f} ms (IQR {q1:+.2f} .. {q3:+.2f}) {_met(overhead)} = client CPU "
            f"{own[name]:4.2f} + endpoint {endpoint:+6.2f} ms {_met(endpoint)}; server CPU over in-process "
            f"{served[name] - own['in-process']:+.2f} ms; connections {connections[name]}"
        )
    load = ", ".join(f"{x:.2f}" for x in os.getloadavg())
    print(
        f"goal < 5 ms per request: round trip met by {verdicts['round trip']} of {len(http_names)} variants, endpoint"
        f" by {verdicts['endpoint']}; load average {load}; wall time {time.perf_counter() - wall:.0f} s"
    )


def _met(overhead: float) -> str:
    return "(met)" if overhead < 5 else "(NOT met)"


def _chat_ports(access_log: Path) -> list[str]:
    """The client port of each chat request in uvicorn's access log ('127.0.0.1:PORT - "POST ..." 200'), in order."""
    lines = access_log.read_text(errors="replace").splitlines()
    return [line.split(" - ")[0].rsplit(":", 1)[-1] for line in lines if '"POST /v1/chat/completions' in line]


if __name__ == "__main__":
    main()
