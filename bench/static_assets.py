"""Server CPU per static file request: the console's server (serve.py, Streamlit's files answered from memory)
against Streamlit's own path for the same files (`streamlit run app.py`), in one invocation.

A first visit of a page with a table loads about 125 of Streamlit's script files (4 MB); each one costs the server
CPU on a machine whose two cores the browser needs to compile them. Both servers run on the same demo registry; the
files are the installed Streamlit's (the 100 smallest, and the 10 largest), fetched over one kept-alive connection,
three times each, after a warm-up request; the CPU is the server process's user + system time across them.

Run: `PYTHONPATH=. .venv/bin/python bench/static_assets.py`.
"""

import os
import tempfile
import time
from pathlib import Path

import httpx
import psutil
from streamlit import file_util

from bench.first_render import start_server

REPEATS = 3


def cpu_per_request(server, url: str, files: list[Path]) -> tuple[float, float]:
    """(server CPU ms per request, per MB) for `files`, each fetched REPEATS times."""
    process = psutil.Process(server.pid)
    root = Path(file_util.get_static_dir())
    paths = ["/" + file.relative_to(root).as_posix() for file in files]
    with httpx.Client(base_url=url) as client:
        client.get(paths[0]).raise_for_status()
        before = sum(process.cpu_times()[:2])
        size = sum(len(client.get(path).content) for _ in range(REPEATS) for path in paths)
        spent = sum(process.cpu_times()[:2]) - before
    return 1000 * spent / (REPEATS * len(paths)), 1000 * spent / (size / 1e6)


def main() -> None:
    files = sorted((Path(file_util.get_static_dir()) / "static" / "js").glob("*.js"), key=lambda f: f.stat().st_size)
    sets = {"100 smallest": files[:100], "10 largest": files[-10:]}
    with tempfile.TemporaryDirectory() as folder:
        home = Path(folder) / "registry"
        os.environ["RMN_LORA_HOME"] = str(home)
        from services.demo import seed_demo

        seed_demo()
        results = {}
        for name, script in (("streamlit's path (app.py)", "app.py"), ("console (serve.py)", "serve.py")):
            server, url = start_server(home, script=script)
            try:
                time.sleep(5)  # the page libraries' background import (serve.py) is not what is measured
                results[name] = {label: cpu_per_request(server, url, chosen) for label, chosen in sets.items()}
            finally:
                server.terminate()
                server.wait(timeout=30)
    print(f"server CPU per static file request (load average {os.getloadavg()[0]:.1f} at the end)")
    for name, rows in results.items():
        print(
            f"  {name:<26} "
            + "   ".join(f"{label}: {ms:.2f} ms/request, {mb:.1f} ms/MB" for label, (ms, mb) in rows.items())
        )
    (reference, ours) = results.values()
    print(
        "  console / streamlit's path: "
        + ", ".join(f"{label} {ours[label][0] / reference[label][0]:.2f}x" for label in sets)
    )


if __name__ == "__main__":
    main()
