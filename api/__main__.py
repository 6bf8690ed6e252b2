"""`python -m api [--host 127.0.0.1] [--port 8502]`: serve the HTTP API with uvicorn."""

import argparse

import uvicorn

from api.app import create_app
from services.access import ConsoleError, check_can_serve


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m api", description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8502)
    args = parser.parse_args(argv)
    try:
        check_can_serve(args.host)  # beyond loopback, callers need tokens, so an admin must exist to make them
    except ConsoleError as error:
        parser.error(f"--host {args.host}: {error}")
    uvicorn.run(create_app(), host=args.host, port=args.port, log_level="info")


if __name__ == "__main__":
    main()
