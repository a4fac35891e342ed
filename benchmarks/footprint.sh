#!/usr/bin/env bash
# Footprint for edge and CI machines: size of a fresh `pip install deepsmote[cpu]` environment
# (no torch), the import time of deepsmote.runtime (median of 5 fresh processes), and, when the
# paper-size benchmark bundle is cached, benchmarks/startup.py run in that environment (no scipy
# there, which numba otherwise imports).
#   bash benchmarks/footprint.sh
set -euo pipefail
cd "$(dirname "$0")/.."
env=$(mktemp -d)/venv
python3 -m venv "$env"
"$env/bin/pip" install -q --upgrade pip
"$env/bin/pip" install -q ".[cpu]"
echo "fresh [cpu] environment: $(du -sm "$env" | cut -f1) MB ($(du -sm "$env"/lib/python3*/site-packages | cut -f1) MB site-packages)"
"$env/bin/python" -c "import torch" 2>/dev/null && echo "torch: installed (unexpected)" || echo "torch: not installed"
for i in 1 2 3 4 5; do
  "$env/bin/python" -c "import time; s = time.perf_counter(); import deepsmote.runtime; print(time.perf_counter() - s)"
done | sort -n | sed -n 3p | xargs printf 'import deepsmote.runtime: %.3f s (median of 5)\n'
bundle=$(ls -d benchmarks/.cache/bundle-w64-z300-* 2>/dev/null | grep -v '\.run$' | head -1 || true)
if [ -n "$bundle" ]; then
  "$env/bin/python" benchmarks/startup.py --bundle "$bundle"
fi
rm -rf "$(dirname "$env")"
