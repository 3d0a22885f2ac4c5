"""The library as a product: the ``ai-factory`` wheel holds everything a team's own CDK app needs."""

from __future__ import annotations

import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

import ai_factory

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> zipfile.ZipFile:
    out = tmp_path_factory.mktemp("dist")
    # From a copy of what the build reads: pip and setuptools walk and write (build/, egg-info) the
    # source folder, which other tests of a parallel run are changing at the same time.
    source = tmp_path_factory.mktemp("source")
    for name in ("pyproject.toml", "README.md"):
        shutil.copy2(ROOT / name, source / name)
    junk = shutil.ignore_patterns("__pycache__", "*.pyc", "*.egg-info")
    for folder in ("ai_factory", "lambdas"):
        shutil.copytree(ROOT / folder, source / folder, ignore=junk)
    # With build isolation, as a release build runs: pip installs the build backend pyproject.toml asks
    # for (the venv's own setuptools may predate the license field's format).
    built = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(out), str(source)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert built.returncode == 0, built.stderr[-3000:]
    (path,) = out.glob("ai_factory-*.whl")
    return zipfile.ZipFile(path)


def test_the_wheel_is_versioned_and_has_the_cli_entry_point(wheel: zipfile.ZipFile) -> None:
    import tomllib

    version = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]["version"]
    assert Path(wheel.filename or "").name.startswith(f"ai_factory-{version}-")
    entry_points = next(n for n in wheel.namelist() if n.endswith(".dist-info/entry_points.txt"))
    assert "ai-factory = ai_factory.cli.main:main" in wheel.read(entry_points).decode()


def test_the_wheel_holds_constructs_cli_local_gateway_catalog_and_lambda_assets(
    wheel: zipfile.ZipFile,
) -> None:
    names = set(wheel.namelist())
    # Every public construct's module, and the package root that exports them.
    for name in ai_factory.__all__:
        module = ai_factory._EXPORTS[name]
        assert module.replace(".", "/") + ".py" in names, f"{name}: {module} is not in the wheel"
    expected = [
        "ai_factory/cli/main.py",
        "ai_factory/cli/lead_time.py",
        "ai_factory/local/server.py",
        "ai_factory/data/models.yaml",
        "ai_factory/platform/lambda_packaging.py",
        # The Lambda code the constructs stage as assets at synth time.
        "aif_gateway/handler.py",
        "aif_gateway/contract.py",
        "aif_gateway/run.sh",
        "aif_canary/handler.py",
        "aif_connector/connector.py",
        "feature_key_provisioner/handler.py",
        "feature_key_provisioner/team_accounts.py",
        "invocation_logging_handler/handler.py",
        # The assistant's backend, start script, page and the local sample documents.
        "aif_assistant/app.py",
        "aif_assistant/run.sh",
        "aif_assistant/web/index.html",
        "aif_assistant/web/app.js",
        "aif_assistant/web/app.css",
        "ai_factory/data/assistant/laptop-requests.md",
    ]
    missing = [n for n in expected if n not in names]
    assert not missing, f"missing from the wheel: {missing}"


def test_every_source_file_of_the_packages_is_in_the_wheel(wheel: zipfile.ZipFile) -> None:
    """A new subpackage left out of pyproject's package list would silently miss from the wheel."""
    names = set(wheel.namelist())
    sources = {
        "ai_factory": ROOT / "ai_factory",
        "aif_gateway": ROOT / "lambdas/gateway/aif_gateway",
        "aif_canary": ROOT / "lambdas/canary/aif_canary",
        "aif_connector": ROOT / "lambdas/connector/aif_connector",
        "feature_key_provisioner": ROOT / "lambdas/feature_key_provisioner",
        "aif_assistant": ROOT / "lambdas/assistant/aif_assistant",
    }
    missing = [
        f"{package}/{path.relative_to(folder).as_posix()}"
        for package, folder in sources.items()
        for path in folder.rglob("*.py")
        if "__pycache__" not in path.parts and f"{package}/{path.relative_to(folder).as_posix()}" not in names
    ]
    assert not missing, f"source files missing from the wheel: {missing}"
