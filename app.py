"""RMN LoRA Console: sign-in when it matters, then the navigation. Each page is a thin script over `services`."""

import streamlit as st

from services.access import (
    LOCAL,
    ConsoleError,
    Role,
    allowed,
    auth_required,
    check_can_serve,
    logout,
    set_default_user,
    sso_sign_out,
)
from services.datasets import prune_scratch
from services.settings import get_settings
from views.common import plain, run_page, show_flash
from views.session import act_as_session_user, forget, sso_claims, sync_cookie
from views.theme import apply_theme

st.set_page_config(page_title="RMN LoRA Console", page_icon=":material/hub:", layout="wide")
# The theme is a console-wide setting: Streamlit sends the theme options with every run, so a change made on the
# Settings page shows from the next rerun, without a restart.
if apply_theme(get_settings().theme):
    st.rerun()


@st.cache_resource(show_spinner=False)
def start_up() -> int:
    """Once per server process: scratch files a killed process left in the registry go."""
    return prune_scratch()


start_up()
address = st.get_option("server.address")
try:
    check_can_serve(address)
except ConsoleError as error:
    st.error(plain(error), icon=":material/lock:")
    st.stop()
actor = act_as_session_user()
required = auth_required(address)
# A run that forgets to set the user (a new code path, a thread) may read but never write while sign-in is on.
set_default_user(None if required else LOCAL)
sync_cookie()

if actor is None:
    run_page(st.navigation([st.Page("views/login.py", title="Sign in", icon=":material/login:")], position="hidden"))
    st.stop()


def sign_out() -> None:
    logout(st.session_state.get("session_token"))
    forget()
    if single_sign_on:
        sso_sign_out(actor)
        st.logout()  # Streamlit's server clears its identity cookie (and asks the provider to end its session)


single_sign_on = sso_claims() is not None
home = st.Page("views/home.py", title="Home", icon=":material/home:", default=True)
account = [
    st.Page("views/users.py", title="Users", icon=":material/group:", url_path="users"),
    st.Page("views/api_tokens.py", title="API tokens", icon=":material/key:", url_path="api_tokens"),
]
if allowed(actor, Role.ADMIN) and required:
    account.append(st.Page("views/audit.py", title="Audit trail", icon=":material/policy:", url_path="audit"))
navigation = st.navigation(
    {
        "": [home],
        "Training Management": [
            st.Page("views/training_jobs.py", title="Training Jobs", icon=":material/model_training:"),
            st.Page("views/train_wizard.py", title="Train Model", icon=":material/route:"),
            st.Page("views/adapters.py", title="Adapters", icon=":material/extension:"),
            st.Page("views/models.py", title="Models", icon=":material/deployed_code:"),
            st.Page("views/publish.py", title="Publish", icon=":material/package_2:"),
            st.Page("views/evaluations.py", title="Evaluations", icon=":material/fact_check:"),
        ],
        "Federation & Composition": [
            st.Page("views/federations.py", title="Federation", icon=":material/hub:"),
            st.Page("views/playground.py", title="Playground", icon=":material/science:"),
        ],
        "Datasets & Mappings": [
            st.Page("views/dataset_library.py", title="Dataset Library", icon=":material/dataset:"),
            st.Page("views/schema_mappings.py", title="Schema Mappings", icon=":material/schema:"),
            st.Page("views/data_browser.py", title="Data Browser", icon=":material/table_view:"),
        ],
        "Analytics & Monitoring": [
            st.Page("views/training_metrics.py", title="Training Metrics", icon=":material/show_chart:"),
            st.Page("views/performance.py", title="Performance Dashboard", icon=":material/speed:"),
            st.Page("views/system_health.py", title="System Health", icon=":material/monitor_heart:"),
        ],
        "Workspace": [
            st.Page("views/activity.py", title="Activity", icon=":material/history:"),
            st.Page("views/settings.py", title="Settings", icon=":material/settings:"),
        ],
        "Account": account,
    },
    expanded=True,  # every page in the sidebar: a collapsed "View 8 more" hid half of the console
)
with st.sidebar:
    if required:
        st.caption(f"Signed in as **{plain(actor.username)}** · {actor.role.label}")
        st.button("Sign out", key="sign_out", icon=":material/logout:", on_click=sign_out)
    else:
        st.caption("Open console: this machine only, no sign-in (create an admin on Users to turn it on).")
show_flash()  # the confirmation of the previous run's action (`done`), on whichever page it happened
run_page(navigation)
