#!/usr/bin/env bash
# Checks that building any one crate (-p) resolves the shared dependency tree
# with the same features as the whole workspace (so the compiled DataFusion and
# Arrow artifacts are reused, see unify/Cargo.toml). Prints the features to add
# to unify/Cargo.toml when they drift; exits 1 then.
set -euo pipefail
cd "$(dirname "$0")/../.."
tree() { cargo tree $1 -e normal,build,dev -f '{p} {f}' --prefix none --target x86_64-unknown-linux-gnu 2>/dev/null | sed 's/ (.*)//; s/ (\*)//' | sort -u; }
tree --workspace > /tmp/unify-w.txt
status=0
# The compute crates do not depend on sluice-unify (no network or CLI crates
# in their trees); they are built alone with it selected beside them.
for p in "sluice-ml -p sluice-unify" "sluice-transforms -p sluice-unify" sluice-common sluice-lake sluice-report sluice-core sluice-engine sluice-cluster sluice-datagen sluice sluice-scheduler sluice-executor; do
  tree "-p $p" > /tmp/unify-x.txt
  python3 - "$p" <<'PY' || status=1
import sys
def load(p):
    d = {}
    for l in open(p):
        parts = l.split()
        if len(parts) >= 2:
            d[(parts[0], parts[1])] = set(parts[2].split(',')) if len(parts) > 2 else set()
    return d
w, x = load('/tmp/unify-w.txt'), load('/tmp/unify-x.txt')
diffs = [(k, sorted(w[k] - x[k])) for k in x if k in w and w[k] - x[k]]
for (name, ver), feats in diffs:
    print(f"{sys.argv[1]}: {name} {ver} lacks features {feats} (add them to unify/Cargo.toml)")
sys.exit(1 if diffs else 0)
PY
done
[ $status -eq 0 ] && echo "feature sets unified"
exit $status
