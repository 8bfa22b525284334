//! The dependency graph goes one way: each Sluice crate depends only on the
//! crates below it (checked over `cargo metadata`), and the scheduler and
//! executor reach none of the command line's, Kubernetes' or the report's
//! crates.
//!
//! `sluice-unify` is left out of the walk: it is the workspace-hack that pins
//! one feature set for the shared dependency tree (so `-p` builds reuse the
//! workspace's compiled DataFusion); it contributes no code of its own, and
//! `tests/run-all.sh` checks the built scheduler and executor binaries carry
//! no symbol of those crates.

use std::collections::{BTreeMap, BTreeSet};
use std::process::Command;

/// The allowed normal (non-dev) dependencies among the workspace's crates.
const LAYERS: &[(&str, &[&str])] = &[
    ("sluice-transforms", &[]),
    ("sluice-ml", &[]),
    ("sluice-common", &["sluice-ml", "sluice-transforms"]),
    ("sluice-lake", &["sluice-common", "sluice-ml"]),
    ("sluice-report", &["sluice-common", "sluice-ml"]),
    (
        "sluice-core",
        &[
            "sluice-common",
            "sluice-lake",
            "sluice-ml",
            "sluice-transforms",
        ],
    ),
    (
        "sluice-engine",
        &[
            "sluice-common",
            "sluice-lake",
            "sluice-core",
            "sluice-report",
            "sluice-ml",
            "sluice-transforms",
        ],
    ),
    ("sluice-cluster", &["sluice-common"]),
    ("sluice-datagen", &["sluice-common", "sluice-lake"]),
    (
        "sluice",
        &[
            "sluice-common",
            "sluice-lake",
            "sluice-core",
            "sluice-engine",
            "sluice-cluster",
            "sluice-datagen",
            "sluice-ml",
        ],
    ),
    ("sluice-scheduler", &["sluice-core"]),
    ("sluice-executor", &["sluice-core"]),
    (
        "sluice-testkit",
        &["sluice-engine", "sluice-lake", "sluice-datagen"],
    ),
];

/// Crates the cluster's server processes must not reach.
const NOT_IN_SERVERS: &[&str] = &[
    "sluice",
    "sluice-engine",
    "sluice-report",
    "sluice-cluster",
    "sluice-datagen",
    "kube",
    "k8s-openapi",
    "plotters",
    "indicatif",
    "clap_complete",
];

const HACK: &str = "sluice-unify";

struct Graph {
    /// Package name → names of its normal dependencies (on this host).
    deps: BTreeMap<String, BTreeSet<String>>,
    members: BTreeSet<String>,
}

/// Runs cargo at the workspace root (offline, with the lock file as is);
/// its standard output.
fn cargo(args: &[&str]) -> Vec<u8> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let out = Command::new(cargo)
        .args(args)
        .args(["--locked", "--offline"])
        .current_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/.."))
        .output()
        .expect("cargo runs");
    assert!(
        out.status.success(),
        "cargo {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

fn metadata() -> Graph {
    // The host's platform only: the packages of other platforms are never
    // downloaded by a build here, and `--offline` must not need them.
    let out = cargo(&[
        "metadata",
        "--format-version",
        "1",
        "--filter-platform",
        "host-tuple",
    ]);
    let v: serde_json::Value = serde_json::from_slice(&out).expect("metadata is JSON");
    let name_of: BTreeMap<String, String> = v["packages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            (
                p["id"].as_str().unwrap().to_string(),
                p["name"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    let members = v["workspace_members"]
        .as_array()
        .unwrap()
        .iter()
        .map(|id| name_of[id.as_str().unwrap()].clone())
        .collect();
    let mut deps = BTreeMap::new();
    for node in v["resolve"]["nodes"].as_array().unwrap() {
        let name = name_of[node["id"].as_str().unwrap()].clone();
        let normal: BTreeSet<String> = node["deps"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|d| {
                d["dep_kinds"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .any(|k| k["kind"].is_null())
            })
            .map(|d| name_of[d["pkg"].as_str().unwrap()].clone())
            .collect();
        deps.entry(name)
            .or_insert_with(BTreeSet::new)
            .extend(normal);
    }
    Graph { deps, members }
}

#[test]
fn workspace_crates_depend_only_downwards() {
    let g = metadata();
    let allowed: BTreeMap<&str, &[&str]> = LAYERS.iter().copied().collect();
    for m in &g.members {
        if m == HACK {
            continue;
        }
        let Some(ok) = allowed.get(m.as_str()) else {
            panic!("workspace crate `{m}` has no place in LAYERS: add it with its allowed dependencies");
        };
        for d in &g.deps[m] {
            if g.members.contains(d) && d != HACK {
                assert!(
                    ok.contains(&d.as_str()),
                    "`{m}` depends on `{d}`, which is not below it (allowed: {ok:?})"
                );
            }
        }
    }
}

#[test]
fn scheduler_and_executor_reach_no_cli_kubernetes_or_report_crate() {
    let g = metadata();
    for server in ["sluice-scheduler", "sluice-executor"] {
        let mut seen = BTreeSet::new();
        let mut stack = vec![server.to_string()];
        while let Some(p) = stack.pop() {
            if p == HACK || !seen.insert(p.clone()) {
                continue;
            }
            stack.extend(g.deps.get(&p).into_iter().flatten().cloned());
        }
        for bad in NOT_IN_SERVERS {
            assert!(
                !seen.contains(*bad),
                "`{server}` reaches `{bad}` through its normal dependencies"
            );
        }
        assert!(
            seen.contains("sluice-core"),
            "{server} uses the one session setup"
        );
    }
}

/// Crates of networking, servers and command lines.
const NETWORK_OR_CLI: &[&str] = &[
    "axum",
    "hyper",
    "hyper-util",
    "reqwest",
    "tonic",
    "h2",
    "rustls",
    "tower-http",
    "clap",
    "kube",
    "indicatif",
    "plotters",
];

/// The compute crates' own dependency trees, resolved for the crate alone
/// (as `cargo build -p` does, not unified with the rest of the workspace),
/// carry no network, server or command-line crate, and not the
/// workspace's feature-set crate either.
#[test]
fn compute_crates_carry_no_network_or_cli_crate() {
    for krate in ["sluice-ml", "sluice-transforms"] {
        let out = cargo(&[
            "tree", "-p", krate, "-e", "normal", "--prefix", "none", "-f", "{p}",
        ]);
        let names: BTreeSet<String> = String::from_utf8_lossy(&out)
            .lines()
            .filter_map(|l| l.split_whitespace().next().map(str::to_string))
            .collect();
        assert!(
            names.contains("datafusion"),
            "{krate}: cargo tree listed {names:?}"
        );
        for bad in NETWORK_OR_CLI.iter().chain([&HACK]) {
            assert!(
                !names.contains(*bad),
                "`{krate}` depends on `{bad}` (cargo tree -p {krate} -e normal -i {bad})"
            );
        }
    }
}
