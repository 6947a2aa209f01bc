"""DOSMatGen Studio: the page list. The first page is Generate; each page is a thin script in pages/."""
import streamlit as st

st.set_page_config(page_title="DOSMatGen Studio", layout="wide")
st.navigation([st.Page("pages/generate.py", title="Generate", icon="⚛️", default=True),
               st.Page("pages/1_Runs.py", title="Runs", icon="🗂️"),
               st.Page("pages/2_Verify.py", title="Verify", icon="🔬"),
               st.Page("pages/3_Model.py", title="Model", icon="📈")]).run()
