#!/usr/bin/env bash
# One entry point for people and CI. Installs whatever is missing, then:
#   ./run.sh app            start the Streamlit app (shipped checkpoint + SQLite reference db)
#   ./run.sh test [ARGS]    run the test suite (pytest ARGS)
#   ./run.sh dosmatgen ...  run the command-line tool inside the project environment
set -euo pipefail
cd "$(dirname "$0")"
ROOT=$(pwd)
VENV="$ROOT/.venv"
PY=python3

apt_missing() {
    local missing=()
    for p in "$@"; do dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p"); done
    echo "${missing[@]:-}"
}

ensure_system() {
    # GPAW's C extension needs these (RECIPE.md); the browser test needs Debian's chromium.
    local m
    m=$(apt_missing libxc-dev libopenblas-dev liblapack-dev libfftw3-dev "$@")
    if [ -n "$m" ]; then
        echo "[setup] installing Debian packages: $m"
        if [ "$(id -u)" = 0 ]; then SUDO=""; else SUDO="sudo"; fi
        $SUDO apt-get update -qq
        DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends $m >/dev/null
    fi
}

ensure_venv() {
    [ -x "$VENV/bin/python" ] || $PY -m venv "$VENV"
    local stamp="$VENV/.dosmatgen-stamp" want
    want=$(cat pyproject.toml run.sh | sha256sum | cut -c1-16)
    if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
        echo "[setup] installing Python packages into .venv (first run takes a few minutes; log: .venv/install.log)"
        {
            "$VENV/bin/pip" install -q --upgrade pip &&
            # GPAW compiles its .c files as C++17: without CC=g++ the build fails (RECIPE.md).
            { "$VENV/bin/python" -c "import gpaw" 2>/dev/null || CC=g++ "$VENV/bin/pip" install -q "gpaw==26.7.0"; } &&
            "$VENV/bin/pip" install -q -e ".[test]"
        } > "$VENV/install.log" 2>&1 || { tail -30 "$VENV/install.log"; echo "[setup] pip install failed" >&2; exit 1; }
        echo "$want" > "$stamp"
    fi
}

cmd=${1:-app}
shift || true
if [ "$cmd" = test ]; then ensure_system chromium; else ensure_system; fi
ensure_venv
export PATH="$VENV/bin:$PATH"
case "$cmd" in
    app)  exec streamlit run app.py --server.headless true "$@" ;;
    test) exec python -m pytest "$@" ;;
    dosmatgen) exec dosmatgen "$@" ;;
    *) echo "usage: ./run.sh app | test [pytest args] | dosmatgen ARGS" >&2; exit 2 ;;
esac
