"""The audit trail (admins): every change, sign-in and refusal, filtered, exported, and its hash chain checked."""

import pandas as pd
import streamlit as st

from services.access import Role, audit_csv, audit_entries, verify_audit
from views.common import attempt, page_title, paginate, plain, show_table
from views.session import can

page_title("Audit trail")
st.caption("Every change, sign-in and refused attempt, in order. Each entry carries the hash of the one before it.")

if not can(Role.ADMIN):
    st.warning("Only admins read the audit trail.", icon=":material/block:")
    st.stop()

check = attempt(verify_audit, "retry_verify")
if check is not None:
    if check.ok:
        st.success(
            f"Chain intact: {check.entries:,} entries. Newest hash `{check.head[:16]}…`", icon=":material/verified:"
        )
    else:
        st.error(
            plain(f"Chain broken ({check.entries:,} entries): " + " ".join(check.problems[:5])),
            icon=":material/gpp_bad:",
        )

entries = attempt(audit_entries, "retry_audit") or []
users = sorted({e.user for e in entries})
actions = sorted({e.action for e in entries})
left, middle, right, search_col = st.columns(4)
chosen_users = left.multiselect("User", users, key="audit_users")
chosen_actions = middle.multiselect("Action", actions, key="audit_actions")
outcomes = right.multiselect("Outcome", ["ok", "denied", "failed"], key="audit_outcomes")
search = search_col.text_input("Target or detail contains", key="audit_search").strip().casefold()
shown = [
    e
    for e in reversed(entries)
    if (not chosen_users or e.user in chosen_users)
    and (not chosen_actions or e.action in chosen_actions)
    and (not outcomes or e.outcome in outcomes)
    and (not search or search in e.target.casefold() or search in e.detail.casefold())
]
st.download_button(
    "Export CSV",
    data=audit_csv(list(reversed(shown))),
    file_name="audit.csv",
    mime="text/csv",
    icon=":material/download:",
    key="audit_export",
    on_click="ignore",
)
if not shown:
    st.info("No entries match." if entries else "Nothing recorded yet.", icon=":material/info:")
else:
    page = paginate(shown, key="audit_page", page_size=50)
    show_table(
        pd.DataFrame(
            {
                "#": [e.seq for e in page],
                "When (UTC)": [e.ts for e in page],
                "User": [e.user for e in page],
                "Role": [e.role for e in page],
                "Action": [e.action for e in page],
                "Target": [e.target for e in page],
                "Outcome": [e.outcome for e in page],
                "Detail": [e.detail for e in page],
            }
        ),
        hide_index=True,
        column_config={"When (UTC)": st.column_config.DatetimeColumn(format="YYYY-MM-DD HH:mm:ss")},
    )
