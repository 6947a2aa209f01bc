"""DOSMatGen Studio: the page list. The first page is Generate; each page is a thin script in pages/."""
import streamlit as st

st.set_page_config(page_title="DOSMatGen Studio", layout="wide")
# no page icons: emoji need a font the browser may lack, and Material icons are fetched from Google
st.navigation([st.Page("pages/generate.py", title="Generate", default=True),
               st.Page("pages/1_Runs.py", title="Runs"),
               st.Page("pages/2_Verify.py", title="Verify"),
               st.Page("pages/3_Model.py", title="Model")]).run()
