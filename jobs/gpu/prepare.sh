#!/usr/bin/env bash
# Build .device/site: the pure-Python packages the workbench needs that a bare GPU image may lack
# (mup, submitit, h5netcdf), unpacked so that PYTHONPATH can take them without pip or a network.
# Runs here, where PyPI is reachable; the folder then travels with the working tree.
#
#   jobs/gpu/prepare.sh            # once; .device/ is ignored by git
#   jobs/gpu/check.sh OUT_DIR      # on the GPU machine (see that script)
set -euo pipefail
cd "$(dirname "$0")/../.."
site=.device/site
rm -rf .device && mkdir -p "$site" .device/dl
python3 -m pip download -q --no-deps -d .device/dl "submitit==1.5.4" "h5netcdf==1.8.3" "mup==1.0.0"
for wheel in .device/dl/*.whl; do python3 -m zipfile -e "$wheel" "$site"; done
# mup is published as a source archive only: its package folder is all that is needed.
tar -xzf .device/dl/mup-*.tar.gz -C .device/dl
cp -r .device/dl/mup-*/mup "$site/"
rm -rf .device/dl
echo "prepared $site: $(ls "$site" | grep -v dist-info | tr '\n' ' ')"
