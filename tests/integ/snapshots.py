"""Synthesize the ``integ_*.py`` cases and keep or verify their snapshots, offline.

    python tests/integ/snapshots.py --update      # write tests/integ/<case>.snapshot/
    python tests/integ/snapshots.py               # verify: exit 1 and show the diff on a change

A snapshot is what ``integ-runner`` keeps (``integ_<name>.py.snapshot/``): the case's ``integ.json`` and
every stack template, minus asset hashes (as ``integ-runner``'s default ``diffAssets: false``: any code
change would otherwise change the snapshot), the assertions' synth-time salt, and CDK's tree and
asset files. Cases synthesize with the context the CDK CLI gives ``make integ``'s deploys.
The integ-runner of the time (2.197.x) cannot read aws-cdk-lib 2.275's cloud assembly (schema 55), so
this module verifies in its place; the layout is the same, so the runner can take over unchanged.
"""

from __future__ import annotations

import difflib
import json
import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
CDK_JSON = HERE.parents[1] / "cdk.json"
_ASSET_HASH = re.compile(r"\b[0-9a-f]{64}\b")
# integ-tests stamps each assertion with the synth time so it runs again on every deploy.
_SALT = re.compile(r'"salt": "\d+"')


def cases() -> list[Path]:
    return sorted(HERE.glob("integ_*.py"))


def snapshot_dir(case: Path) -> Path:
    return case.with_name(case.name + ".snapshot")


def synthesize(case: Path, outdir: Path) -> dict[str, str]:
    """``{file name: normalized text}`` of the case's integ.json and templates, synthesized into outdir."""
    # What the CDK CLI passes when `make integ` deploys: cdk.json's context (feature flags) and its own
    # settings (construct paths and asset metadata on, version reporting off), so the templates match.
    context = {
        **json.loads(CDK_JSON.read_text()).get("context", {}),
        "aws:cdk:enable-path-metadata": True,
        "aws:cdk:enable-asset-metadata": True,
        "aws:cdk:version-reporting": False,
    }
    env = {**os.environ, "CDK_OUTDIR": str(outdir), "CDK_CONTEXT_JSON": json.dumps(context)}
    run = subprocess.run(
        [sys.executable, str(case)], cwd=HERE, env=env, capture_output=True, text=True, timeout=600
    )
    if run.returncode != 0:
        raise RuntimeError(f"{case.name} failed to synthesize:\n{run.stderr[-4000:]}")
    files = [*sorted(outdir.glob("*.template.json")), outdir / "integ.json"]
    return {f.name: normalize(f.read_text()) for f in files}


def normalize(text: str) -> str:
    data = json.loads(text)
    text = _ASSET_HASH.sub("<asset-hash>", json.dumps(data, indent=1, sort_keys=True))
    return _SALT.sub('"salt": "<synth time>"', text) + "\n"


def stored(case: Path) -> dict[str, str]:
    folder = snapshot_dir(case)
    return {f.name: f.read_text() for f in sorted(folder.glob("*.json"))} if folder.is_dir() else {}


def differences(case: Path, fresh: dict[str, str]) -> str:
    """A unified diff between the stored snapshot and ``fresh`` ('' when they match)."""
    old = stored(case)
    out: list[str] = []
    for name in sorted(set(old) | set(fresh)):
        out += difflib.unified_diff(
            old.get(name, "").splitlines(True),
            fresh.get(name, "").splitlines(True),
            f"snapshot/{name}",
            f"synth/{name}",
            n=2,
        )
    return "".join(out)


def write(case: Path, fresh: dict[str, str]) -> None:
    folder = snapshot_dir(case)
    folder.mkdir(exist_ok=True)
    for old in folder.glob("*.json"):
        if old.name not in fresh:
            old.unlink()
    for name, text in fresh.items():
        (folder / name).write_text(text)


def main(argv: list[str]) -> int:
    update = "--update" in argv
    failed = 0
    for case in cases():
        with tempfile.TemporaryDirectory() as out:
            fresh = synthesize(case, Path(out))
        diff = differences(case, fresh)
        if update:
            write(case, fresh)
            print(f"{case.name}: {'updated' if diff else 'unchanged'}")
        elif diff:
            failed += 1
            print(f"{case.name}: snapshot changed (run make integ-snapshots, review, commit)\n{diff[:6000]}")
        else:
            print(f"{case.name}: no change")
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
