"""The console's server: Streamlit runs app.py, and two HTTP routes of ours set and clear the sign-in cookie in
their own responses, so it is HttpOnly (no page script can read it) as well as SameSite=Strict.

`make run` starts it (`streamlit run serve.py`): Streamlit finds the `st.App` below and serves it with uvicorn.
"""

import streamlit as st

from views.session import session_routes

app = st.App("app.py", routes=session_routes())
