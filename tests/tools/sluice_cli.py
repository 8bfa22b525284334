"""The `sluice` binary for the Python test suites (tests/catalogue,
tests/models): where it is, how to run it, and a small generated lake.

    from sluice_cli import SLUICE, sluice, run, generate_lake

`SLUICE_BIN` names the binary; otherwise it is
`$CARGO_TARGET_DIR/release/sluice` (default target `~/.cache/sluice-target`),
built with `cargo build --release -p sluice --bin sluice`."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path


def sluice_bin() -> str:
    b = os.environ.get("SLUICE_BIN")
    if b:
        return b
    target = os.environ.get("CARGO_TARGET_DIR", os.path.expanduser("~/.cache/sluice-target"))
    return os.path.join(target, "release", "sluice")


SLUICE = sluice_bin()


class Result:
    """Exit code, stdout and stderr of one `sluice` command."""

    def __init__(self, p: subprocess.CompletedProcess):
        self.code = self.returncode = p.returncode
        self.out = self.stdout = p.stdout
        self.err = self.stderr = p.stderr

    def __repr__(self):
        return f"exit {self.code}\n--- stdout\n{self.out}\n--- stderr\n{self.err}"


def run(*args, env: dict | None = None, timeout: float = 300) -> Result:
    """Runs `sluice --quiet ARGS` (RUST_LOG=warn unless set) and returns its result."""
    e = dict(os.environ)
    e.setdefault("RUST_LOG", "warn")
    if env:
        e.update(env)
    p = subprocess.run(
        [sluice_bin(), "--quiet", *map(str, args)],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=e,
        stdin=subprocess.DEVNULL,
    )
    return Result(p)


def sluice(*args, check: bool = True, timeout: float = 900) -> Result:
    """`run`; with `check`, fails the test with the command's output when it
    exits non-zero."""
    r = run(*args, timeout=timeout)
    if check and r.code != 0:
        raise AssertionError(f"sluice {' '.join(map(str, args))} exited {r.code}\n{r.out}\n{r.err}")
    return r


def generate_lake(out, samples: int, devices: int, train_rows: int, *extra) -> Path:
    """`sluice datagen` into OUT (extra flags such as --seed or --chunk-samples)."""
    if not os.path.exists(sluice_bin()):
        raise AssertionError(
            f"sluice binary not found at {sluice_bin()}: cargo build --release -p sluice --bin sluice"
        )
    sluice("datagen", "--out", out, "--samples", samples, "--devices", devices, "--train-rows", train_rows, *extra)
    return Path(out)
