"""`python -m api [--host 127.0.0.1] [--port 8502]`: serve the HTTP API with uvicorn."""

import argparse

import uvicorn

from api.access import is_loopback
from api.app import create_app


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m api", description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8502)
    args = parser.parse_args(argv)
    if not is_loopback(args.host):
        parser.error(f"--host {args.host}: the API has no access control yet, so it binds loopback addresses only.")
    uvicorn.run(create_app(), host=args.host, port=args.port, log_level="info")


if __name__ == "__main__":
    main()
