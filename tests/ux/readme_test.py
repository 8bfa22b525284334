#!/usr/bin/env python3
"""README as a test: runs every shell block of README.md, in order, as a
user would, in a scratch directory, and fails on the first command that
fails.

* A block runs with `bash -euo pipefail` in the scratch directory, which
  holds a `config` link to the repository's configs, so `config/...` and
  `./lake` mean what they mean in a checkout.
* `cargo run ... --bin sluice -- ARGS` runs the release binary the harness
  built first (the same build `cargo run --release` makes); other `cargo`
  commands run in the repository. `alias sluice=...` lines define the same.
* Aliases and exports of a block stay defined for the later blocks, as in
  one shell session.
* A block preceded by `<!-- readme-test: skip REASON -->` is skipped and the
  reason printed (e.g. the block needs an Azure account, or is this test
  suite itself).

Usage: readme_test.py [README.md]
"""

import os
import re
import shutil
import subprocess
import sys
import tempfile
import time

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
TARGET = os.environ.get("CARGO_TARGET_DIR") or os.path.expanduser("~/.cache/sluice-target")

BLOCK = re.compile(
    r"(?P<marker><!--\s*readme-test:\s*(?P<directive>[^>]*?)\s*-->\s*\n)?```(?:sh|bash|shell)\n(?P<body>.*?)```",
    re.S,
)


def prelude(bin_path):
    return f"""
set -euo pipefail
shopt -s expand_aliases
export CARGO_TARGET_DIR={TARGET!r}
__sluice_repo={ROOT!r}
__sluice_bin={bin_path!r}
cargo() {{
  # `cargo run ... --bin sluice -- ARGS`: the binary built by the harness.
  if [ "${{1:-}}" = run ]; then
    local seen=0 args=()
    for a in "$@"; do
      if [ "$seen" = 1 ]; then args+=("$a"); elif [ "$a" = -- ]; then seen=1; fi
    done
    "$__sluice_bin" "${{args[@]}}"
  else
    (cd "$__sluice_repo" && command cargo "$@")
  fi
}}
"""


def blocks(text):
    for m in BLOCK.finditer(text):
        line = text.count("\n", 0, m.start("body")) + 1
        yield line, (m.group("directive") or "").strip(), m.group("body")


def main():
    readme = sys.argv[1] if len(sys.argv) > 1 else os.path.join(ROOT, "README.md")
    text = open(readme, encoding="utf-8").read()
    print("building the sluice binary (cargo build --release -p sluice --bin sluice)")
    subprocess.run(
        ["cargo", "build", "--release", "-q", "-p", "sluice", "--bin", "sluice"],
        cwd=ROOT,
        check=True,
    )
    bin_path = os.path.join(TARGET, "release", "sluice")
    scratch = tempfile.mkdtemp(prefix="sluice-readme-")
    os.symlink(os.path.join(ROOT, "config"), os.path.join(scratch, "config"))
    env = dict(os.environ)
    for var in ("SLUICE_LAKE", "SLUICE_SCHEDULER"):
        env.pop(var, None)
    ran = skipped = 0
    # A user types the blocks into one shell: aliases and exports of a block
    # stay defined for the next ones.
    carried = []
    try:
        for line, directive, body in blocks(text):
            where = f"README.md:{line}"
            if directive.startswith("skip"):
                print(f"--- {where}: skipped ({directive[4:].strip() or 'no reason given'})")
                skipped += 1
                continue
            print(f"--- {where}:\n{body.rstrip()}")
            t = time.time()
            script = prelude(bin_path) + "\n".join(carried) + "\n" + body
            p = subprocess.run(["bash", "-c", script], cwd=scratch, env=env)
            if p.returncode != 0:
                print(f"FAILED: the block at {where} exited with {p.returncode}")
                return 1
            print(f"--- {where}: ok in {time.time() - t:.1f}s")
            carried += [l for l in body.splitlines() if re.match(r"\s*(alias|export) ", l)]
            ran += 1
    finally:
        # Stop a local cluster a failed block may have left running.
        state = os.path.join(scratch, ".sluice", "cluster")
        if os.path.exists(os.path.join(state, "cluster.json")):
            subprocess.run([bin_path, "cluster", "down", "--dir", state], cwd=scratch)
        shutil.rmtree(scratch, ignore_errors=True)
    if ran == 0:
        print("no README block ran")
        return 1
    print(f"README: {ran} blocks ran, {skipped} skipped")
    return 0


if __name__ == "__main__":
    sys.exit(main())
