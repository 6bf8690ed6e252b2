"""The console's server: Streamlit runs app.py, and two HTTP routes of ours set and clear the sign-in cookie in
their own responses, so it is HttpOnly (no page script can read it) as well as SameSite=Strict.

`make run` starts it (`streamlit run serve.py`): Streamlit finds the `st.App` below and serves it with uvicorn.
"""

from contextlib import asynccontextmanager

import streamlit as st

from services.runtime import warm_page_libraries
from services.settings import get_settings
from views.session import session_routes
from views.theme import apply_theme

# The saved theme from the first page on (app.py applies a change made later, at the next run).
apply_theme(get_settings().theme)


@asynccontextmanager
async def start_up(_app: st.App):
    """With the server, before any browser connects: the pages' libraries start importing in the background."""
    warm_page_libraries()
    yield


app = st.App("app.py", routes=session_routes(), lifespan=start_up)
