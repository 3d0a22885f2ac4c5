"""Wall time of ``make synth``, cold and warm.

* cold: an empty jsii package cache (``JSII_RUNTIME_PACKAGE_CACHE_ROOT`` pointed at a fresh folder, so
  the ~200 MB of jsii assemblies are unpacked again, as on a new machine) and no ``cdk.out``.
* warm: the same command again, cache and ``cdk.out`` in place (the median of ``--warm`` runs).

The project's own installs (``.venv``, ``node_modules``) are assumed present: installing is not
synthesizing, and ``make synth`` skips it when their stamps are current.

    python benchmarks/synth_time.py --warm 2
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
CACHE_ROOT = REPO / ".bench" / "jsii-cache"


def _make_synth(env: dict[str, str]) -> tuple[float, int, str]:
    start = time.perf_counter()
    proc = subprocess.run(
        ["make", "synth"], cwd=REPO, env=env, capture_output=True, text=True, timeout=900, check=False
    )
    return time.perf_counter() - start, proc.returncode, (proc.stdout + proc.stderr)[-1500:]


def run(warm_runs: int = 2) -> dict[str, Any]:
    shutil.rmtree(CACHE_ROOT, ignore_errors=True)
    CACHE_ROOT.mkdir(parents=True)
    env = {**os.environ, "JSII_RUNTIME_PACKAGE_CACHE_ROOT": str(CACHE_ROOT)}
    shutil.rmtree(REPO / "cdk.out", ignore_errors=True)
    cold_s, code, tail = _make_synth(env)
    if code != 0:
        return {"ok": False, "cold_s": round(cold_s, 2), "error": tail}
    warm = []
    for _ in range(max(1, warm_runs)):
        seconds, code, tail = _make_synth(env)
        if code != 0:
            return {"ok": False, "cold_s": round(cold_s, 2), "error": tail}
        warm.append(round(seconds, 2))
    templates = len(list((REPO / "cdk.out").glob("*.template.json")))
    return {
        "ok": True,
        "cold_s": round(cold_s, 2),
        "warm_s": statistics.median(warm),
        "warm_samples_s": warm,
        "templates": templates,
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--warm", type=int, default=2, help="warm runs (median reported)")
    args = parser.parse_args()
    print(json.dumps(run(min(args.warm, 5)), indent=2))


if __name__ == "__main__":
    main()
