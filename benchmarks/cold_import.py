"""Cold import time of the Lambda handler module ``aif_gateway.handler``.

Each repeat is a fresh interpreter (``-X importtime`` off, bytecode already compiled, as in a Lambda
image after the first deploy) that imports the module and reports the import's own wall time; the
median over the repeats is the figure. Two environments:

* ``lambda-asset``: the variables Lambda sets (``AWS_LAMBDA_FUNCTION_NAME``, the function's credentials
  and friends) and ``AIF_TRACES_EXPORTER=xray`` as the construct sets it, so the handler loads the
  OpenTelemetry SDK and builds its X-Ray OTLP exporter at import, as deployed; and only what the deployed
  function can import on its path: the asset (``aif_gateway`` and the OpenTelemetry API and SDK it
  ships), what the Lambda runtime ships (boto3 and its dependencies) and what the Powertools layer
  ships that the handler uses (Powertools, typing_extensions). The interpreter runs with ``-S`` and a
  folder of links to exactly those packages. This is the figure the target is checked against.
* ``project-venv``: the same variables with the whole project venv importable.
* ``tracing-off``: the project venv with ``AIF_TRACES_EXPORTER=none`` (no SDK loaded).

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
# Wall time and the process's CPU time of the import: on a busy machine the wall time also counts the
# time the process waited for a core; the CPU time does not, so it is the steadier comparison.
_PROBE = (
    "import time; t, c = time.perf_counter(), time.process_time(); import {module}; "
    "print(round((time.perf_counter() - t) * 1000, 2), round((time.process_time() - c) * 1000, 2))"
)
LAMBDA_ENV = {
    "AWS_LAMBDA_FUNCTION_NAME": "aif-gateway",
    "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": "1024",
    "AWS_EXECUTION_ENV": "AWS_Lambda_python3.13",
    "LAMBDA_TASK_ROOT": "/var/task",
    "_X_AMZN_TRACE_ID": "Root=1-00000000-000000000000000000000000;Parent=0000000000000000;Sampled=0",
    # Lambda puts the function's credentials in the environment (the exporter reads them at init).
    "AWS_ACCESS_KEY_ID": "AKIDBENCHMARK",
    "AWS_SECRET_ACCESS_KEY": "benchmark",
    "AWS_SESSION_TOKEN": "benchmark",
    "AWS_REGION": "us-east-1",
    "AWS_DEFAULT_REGION": "us-east-1",
    "POWERTOOLS_SERVICE_NAME": "aif-gateway",
    "POWERTOOLS_METRICS_NAMESPACE": "AiFactory",
    "AIF_KEYS_TABLE": "keys",
    "AIF_USAGE_TABLE": "usage",
    "AIF_TRACES_EXPORTER": "xray",
}


# Top-level importable names the deployed function has from the Lambda runtime (boto3 and its
# dependencies) and of the Powertools layer what the handler uses (Powertools, typing_extensions). The
# asset's own files (aif_gateway, the vendored OpenTelemetry distributions) are added as staged.
LAMBDA_PATH_PACKAGES = (
    "boto3", "botocore", "s3transfer", "jmespath", "dateutil", "six", "urllib3",
    "aws_lambda_powertools", "typing_extensions",
)  # fmt: skip
ASSET_PATH = Path(__file__).resolve().parent.parent / ".bench" / "lambda-path"


_built: list[Path] = []


def lambda_path() -> Path:
    """A folder of links to the packages the deployed function can import (built once per run, so the
    vendored files' bytecode, compiled next to their links, is compiled only by the warm-up import)."""
    import importlib.util
    import shutil

    if _built:
        return _built[0]

    shutil.rmtree(ASSET_PATH, ignore_errors=True)
    ASSET_PATH.mkdir(parents=True)
    for name in (*LAMBDA_PATH_PACKAGES, "aif_gateway"):
        spec = importlib.util.find_spec(name)
        if spec is None or spec.origin is None:
            raise RuntimeError(f"{name} is not installed")
        origin = Path(spec.origin)
        source = origin.parent if origin.name == "__init__.py" else origin
        (ASSET_PATH / source.name).symlink_to(source)
    from ai_factory.platform.lambda_packaging import distribution_files

    for relative, file in distribution_files().items():  # exactly what the gateway asset ships
        (ASSET_PATH / relative).parent.mkdir(parents=True, exist_ok=True)
        (ASSET_PATH / relative).symlink_to(file)
    _built.append(ASSET_PATH)
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
        env["AIF_TRACES_EXPORTER"] = "none"
    return env


def measure(variant: str, repeats: int) -> dict[str, Any]:
    env = _env(variant)
    # One run first so every .pyc exists; its time is not kept.
    subprocess.run(_argv(variant, f"import {MODULE}"), env=env, check=True, timeout=120)
    samples: list[float] = []
    cpu_samples: list[float] = []
    for _ in range(repeats):
        out = subprocess.run(
            _argv(variant, _PROBE.format(module=MODULE)),
            env=env,
            capture_output=True,
            text=True,
            check=True,
            timeout=120,
        )
        wall, cpu = out.stdout.strip().splitlines()[-1].split()
        samples.append(float(wall))
        cpu_samples.append(float(cpu))
    return {
        "median_ms": round(statistics.median(samples), 1),
        "min_ms": min(samples),
        "max_ms": max(samples),
        "samples_ms": samples,
        "cpu_median_ms": round(statistics.median(cpu_samples), 1),
        "cpu_samples_ms": cpu_samples,
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
