"""RMN LoRA Console: the navigation. Each page is a thin script over the `services` API."""

import streamlit as st

st.set_page_config(page_title="RMN LoRA Console", page_icon="🧩", layout="wide")

home = st.Page("pages/home.py", title="Home", icon="🏠", default=True)
navigation = st.navigation(
    {
        "": [home],
        "Datasets & Mappings": [
            st.Page("pages/dataset_library.py", title="Dataset Library", icon="📊", url_path="datasets"),
            st.Page("pages/schema_mappings.py", title="Schema Mappings", icon="🗺️", url_path="mappings"),
            st.Page("pages/data_browser.py", title="Data Browser", icon="📁", url_path="browser"),
        ],
    }
)
navigation.run()
