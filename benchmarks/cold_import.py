"""Cold import time of the Lambda handler module ``aif_gateway.handler``.

Each repeat is a fresh interpreter (``-X importtime`` off, bytecode already compiled, as in a Lambda
image after the first deploy) that imports the module and reports the import's own wall time; the
median over the repeats is the figure. Two environments:

* ``lambda-asset``: the variables Lambda sets (``AWS_LAMBDA_FUNCTION_NAME`` and friends), so
  Powertools' Tracer sees it is in Lambda, loads the X-Ray SDK and patches what it finds; and only what
  the deployed function can import on its path: the ``aif_gateway`` package (the asset), what the
  Lambda runtime ships (boto3 and its dependencies) and what the Powertools layer ships (Powertools,
  the X-Ray SDK, wrapt, typing_extensions). The interpreter runs with ``-S`` and a folder of links to
  exactly those packages. This is the figure the target is checked against.
* ``project-venv``: the same variables with the whole project venv importable. The X-Ray SDK patches
  every library it supports that it can import (requests, sqlalchemy, ...), so anything a dev
  dependency brings in shows up here and not in Lambda.
* ``tracing-off``: the project venv with ``POWERTOOLS_TRACE_DISABLED=true``.

It also lists the slowest imports of one extra run (``-X importtime``, cumulative microseconds), to show
where the time goes.

    python benchmarks/cold_import.py --repeats 9
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
from pathlib import Path
from typing import Any

MODULE = "aif_gateway.handler"
_PROBE = (
    "import time; t = time.perf_counter(); import {module}; print(round((time.perf_counter() - t) * 1000, 2))"
)
LAMBDA_ENV = {
    "AWS_LAMBDA_FUNCTION_NAME": "aif-gateway",
    "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": "1024",
    "AWS_EXECUTION_ENV": "AWS_Lambda_python3.13",
    "LAMBDA_TASK_ROOT": "/var/task",
    "_X_AMZN_TRACE_ID": "Root=1-00000000-000000000000000000000000;Parent=0000000000000000;Sampled=0",
    "AWS_REGION": "us-east-1",
    "AWS_DEFAULT_REGION": "us-east-1",
    "POWERTOOLS_SERVICE_NAME": "aif-gateway",
    "POWERTOOLS_METRICS_NAMESPACE": "AiFactory",
    "AIF_KEYS_TABLE": "keys",
    "AIF_USAGE_TABLE": "usage",
}


# Top-level importable names the deployed function has: Lambda runtime (boto3 and its dependencies)
# and the Powertools layer (Powertools, X-Ray SDK and theirs).
LAMBDA_PATH_PACKAGES = (
    "boto3", "botocore", "s3transfer", "jmespath", "dateutil", "six", "urllib3",
    "aws_lambda_powertools", "aws_xray_sdk", "wrapt", "typing_extensions",
)  # fmt: skip
ASSET_PATH = Path(__file__).resolve().parent.parent / ".bench" / "lambda-path"


def lambda_path() -> Path:
    """A folder of links to the packages the deployed function can import (rebuilt each run)."""
    import importlib.util
    import shutil

    shutil.rmtree(ASSET_PATH, ignore_errors=True)
    ASSET_PATH.mkdir(parents=True)
    for name in (*LAMBDA_PATH_PACKAGES, "aif_gateway"):
        spec = importlib.util.find_spec(name)
        if spec is None or spec.origin is None:
            raise RuntimeError(f"{name} is not installed")
        origin = Path(spec.origin)
        source = origin.parent if origin.name == "__init__.py" else origin
        (ASSET_PATH / source.name).symlink_to(source)
    return ASSET_PATH


def _argv(variant: str, code: str, *flags: str) -> list[str]:
    if variant == "lambda-asset":
        code = f"import sys; sys.path.insert(0, {str(lambda_path())!r}); {code}"
        return [sys.executable, "-S", *flags, "-c", code]
    return [sys.executable, *flags, "-c", code]


def _env(variant: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "POWERTOOLS_", "AIF_"))}
    env.update(LAMBDA_ENV)
    if variant == "tracing-off":
        env["POWERTOOLS_TRACE_DISABLED"] = "true"
    return env


def measure(variant: str, repeats: int) -> dict[str, Any]:
    env = _env(variant)
    # One run first so every .pyc exists; its time is not kept.
    subprocess.run(_argv(variant, f"import {MODULE}"), env=env, check=True, timeout=120)
    samples = []
    for _ in range(repeats):
        out = subprocess.run(
            _argv(variant, _PROBE.format(module=MODULE)),
            env=env,
            capture_output=True,
            text=True,
            check=True,
            timeout=120,
        )
        samples.append(float(out.stdout.strip().splitlines()[-1]))
    return {
        "median_ms": round(statistics.median(samples), 1),
        "min_ms": min(samples),
        "max_ms": max(samples),
        "samples_ms": samples,
    }


def slowest_imports(variant: str, top: int = 10) -> list[tuple[str, float]]:
    """Distributions by total import time (ms, the sum of their modules' own times) in one
    ``-X importtime`` run: which packages the handler's cold start pays for."""
    out = subprocess.run(
        _argv(variant, f"import {MODULE}", "-X", "importtime"),
        env=_env(variant),
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
    )
    by_package: dict[str, float] = {}
    for line in out.stderr.splitlines():
        if not line.startswith("import time:"):
            continue
        own, _, name = line[len("import time:") :].split("|")
        if not own.strip().isdigit():
            continue  # the header line
        package = name.strip().split(".")[0]
        by_package[package] = by_package.get(package, 0.0) + int(own) / 1000.0
    ranked = sorted(by_package.items(), key=lambda kv: kv[1], reverse=True)
    return [(name, round(ms, 1)) for name, ms in ranked[:top]]


def run(repeats: int = 9) -> dict[str, Any]:
    return {
        "module": MODULE,
        "repeats": repeats,
        "lambda": measure("lambda-asset", repeats),
        "project_venv": measure("project-venv", repeats),
        "tracing_off": measure("tracing-off", repeats),
        "slowest_imports_lambda": slowest_imports("lambda-asset"),
        "slowest_imports_project_venv": slowest_imports("project-venv"),
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--repeats", type=int, default=9)
    args = parser.parse_args()
    print(json.dumps(run(max(1, min(args.repeats, 50))), indent=2))


if __name__ == "__main__":
    main()
