"""The console's server: Streamlit runs app.py, and two HTTP routes of ours set and clear the sign-in cookie in
their own responses, so it is HttpOnly (no page script can read it) as well as SameSite=Strict.

`make run` starts it (`streamlit run serve.py`): Streamlit finds the `st.App` below and serves it with uvicorn.
"""

import socket
from contextlib import asynccontextmanager

import psutil
import streamlit as st
from starlette.middleware import Middleware

from services.runtime import warm_page_libraries
from services.settings import get_settings
from views.session import session_routes
from views.static_assets import StaticAssets
from views.theme import apply_theme

# The saved theme from the first page on (app.py applies a change made later, at the next run).
apply_theme(get_settings().theme)


def send_without_delay() -> int:
    """Turn Nagle's algorithm off on this process's listening TCP sockets; each connection they accept inherits it.

    Streamlit binds its socket itself without naming the protocol (`socket.socket(family)`: protocol 0), and
    asyncio only sets TCP_NODELAY on sockets whose protocol is TCP, so every response after the first on a kept-alive
    connection (headers, then body: two writes) waited for the browser's delayed ACK: 40-48 ms per file, measured,
    for each of the 60 script files a first visit loads over 6 connections, and for the app's messages. Returns how
    many listening sockets it set."""
    count = 0
    for connection in psutil.Process().net_connections(kind="tcp"):
        if connection.status != psutil.CONN_LISTEN or connection.fd < 0:
            continue
        with socket.fromfd(connection.fd, connection.family, socket.SOCK_STREAM) as listener:  # a duplicate fd
            listener.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        count += 1
    return count


@asynccontextmanager
async def start_up(_app: st.App):
    """With the server, before any browser connects: its socket sends without delay, and the pages' libraries
    start importing in the background."""
    send_without_delay()
    warm_page_libraries()
    yield


app = st.App("app.py", routes=session_routes(), middleware=[Middleware(StaticAssets)], lifespan=start_up)
