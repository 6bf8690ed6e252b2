"""RMN LoRA Console: the navigation. Each page is a thin script over the `services` API."""

import streamlit as st

st.set_page_config(page_title="RMN LoRA Console", page_icon="🧩", layout="wide")

home = st.Page("pages/home.py", title="Home", icon="🏠", default=True)
navigation = st.navigation(
    {
        "": [home],
        "Training Management": [
            st.Page("pages/training_jobs.py", title="Training Jobs", icon="🚀", url_path="training"),
            st.Page("pages/adapters.py", title="Adapters", icon="🧩", url_path="adapters"),
        ],
        "Federation & Composition": [
            st.Page("pages/federations.py", title="Federation", icon="🔗", url_path="federation"),
            st.Page("pages/playground.py", title="Playground", icon="🧪", url_path="playground"),
        ],
        "Datasets & Mappings": [
            st.Page("pages/dataset_library.py", title="Dataset Library", icon="📊", url_path="datasets"),
            st.Page("pages/schema_mappings.py", title="Schema Mappings", icon="🗺️", url_path="mappings"),
            st.Page("pages/data_browser.py", title="Data Browser", icon="📁", url_path="browser"),
        ],
    }
)
navigation.run()
