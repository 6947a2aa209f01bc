"""DOSMatGen Studio: the entry point. The page list (Generate first) lives in studio/nav.py; each
page is a thin script in pages/."""
from studio import nav

nav.run_app()
