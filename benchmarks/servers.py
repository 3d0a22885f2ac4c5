"""Start, wait for and stop the servers the benchmarks compare, each in its own process group.

Every server binds 127.0.0.1 on a free port. Readiness is polled with a bounded deadline, and a server
is always stopped by signalling its own process group (SIGTERM, then SIGKILL), so no worker process it
spawned outlives the benchmark.
"""

from __future__ import annotations

import contextlib
import hashlib
import http.client
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
BENCH_DIR = REPO / ".bench"
LITELLM_DIR = Path(__file__).resolve().parent / "litellm"
LITELLM_VENV = BENCH_DIR / "litellm-venv"
LITELLM_MASTER_KEY = "sk-bench-master-key"

# LiteLLM fetches a model cost map and a few other files from the internet at start unless told to use
# the copies it ships. This machine has no such network, and a benchmark must not depend on one.
LITELLM_OFFLINE_ENV = {
    "LITELLM_LOCAL_MODEL_COST_MAP": "True",
    "LITELLM_LOCAL_ANTHROPIC_BETA_HEADERS": "True",
    "LITELLM_LOCAL_AUTOROUTER_PRESETS": "True",
    "LITELLM_LOCAL_BLOG_POSTS": "True",
    "LITELLM_LOCAL_POLICY_TEMPLATES": "True",
    "LITELLM_TELEMETRY": "False",
    "DISABLE_SCHEMA_UPDATE": "True",
    "NO_DOCS": "True",
    "NO_REDOC": "True",
}


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@dataclass
class RunningServer:
    name: str
    port: int
    key: str
    process: subprocess.Popen[bytes]
    log_path: Path
    startup_s: float  # from spawn to the first answer on the readiness path
    how: str = ""  # the commands that set it up, for the results page


def wait_ready(port: int, path: str, process: subprocess.Popen[bytes], timeout_s: float) -> float:
    """Poll GET ``path`` until the server answers it (any status below 500: a 401 from an endpoint that
    wants a key still proves the server is up); return seconds waited. Raise if the process dies first."""
    start = time.perf_counter()
    deadline = start + timeout_s
    while time.perf_counter() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"server exited with code {process.returncode} before it was ready")
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
        try:
            conn.request("GET", path)
            if conn.getresponse().status < 500:
                return time.perf_counter() - start
        except OSError:
            pass
        finally:
            conn.close()
        time.sleep(0.1)
    raise TimeoutError(f"server on port {port} not ready within {timeout_s:.0f} s")


def stop(process: subprocess.Popen[bytes], grace_s: float = 10.0) -> None:
    """SIGTERM the server's process group, then SIGKILL it if it is still there after ``grace_s``."""
    if process.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(grace_s)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait(5)


@contextlib.contextmanager
def launched(
    name: str,
    argv: Sequence[str],
    *,
    port: int,
    key: str,
    ready_path: str,
    env: Mapping[str, str] | None = None,
    cwd: Path = REPO,
    ready_timeout_s: float = 120.0,
) -> Iterator[RunningServer]:
    """Run ``argv`` in a new session (own process group), wait until ready, stop it on exit."""
    BENCH_DIR.mkdir(exist_ok=True)
    log_path = BENCH_DIR / f"{name}.log"
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            list(argv),
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            env={**os.environ, **(env or {})},
            cwd=cwd,
            start_new_session=True,
        )
        try:
            startup_s = wait_ready(port, ready_path, process, ready_timeout_s)
            how = " ".join(str(a) for a in argv).replace(str(REPO) + "/", "")
            yield RunningServer(name, port, key, process, log_path, startup_s, how)
        except Exception:
            tail = log_path.read_text(errors="replace")[-2000:]
            print(f"--- last lines of {log_path} ---\n{tail}", file=sys.stderr)
            raise
        finally:
            stop(process)


def ensure_litellm_venv() -> Path:
    """Create ``.bench/litellm-venv`` from the pinned requirements when missing or when the pins change.

    LiteLLM is a benchmark-only dependency and never enters the project's own environment.
    """
    requirements = LITELLM_DIR / "requirements.txt"
    digest = hashlib.sha256(requirements.read_bytes()).hexdigest()
    stamp = LITELLM_VENV / ".requirements.sha256"
    exe = LITELLM_VENV / "bin" / "litellm"
    if exe.exists() and stamp.exists() and stamp.read_text().strip() == digest:
        return exe
    BENCH_DIR.mkdir(exist_ok=True)
    print(f"creating {LITELLM_VENV} from {requirements} (about a minute) ...", file=sys.stderr)
    subprocess.run([sys.executable, "-m", "venv", str(LITELLM_VENV)], check=True, timeout=300)
    pip = [str(LITELLM_VENV / "bin" / "pip"), "install", "--quiet", "--disable-pip-version-check"]
    subprocess.run([*pip, "-r", str(requirements)], check=True, timeout=900)
    stamp.write_text(digest)
    return exe


@contextlib.contextmanager
def litellm_proxy(
    workers: int = 1, ready_timeout_s: float = 120.0, paced_api_base: str | None = None
) -> Iterator[RunningServer]:
    """LiteLLM proxy with the mocked ``echo`` model, master-key auth and no database; its ``paced``
    model forwards to ``paced_api_base`` (the paced stub of the streaming comparison)."""
    exe = ensure_litellm_venv()
    port = free_port()
    argv = [
        str(exe),
        "--config",
        str(LITELLM_DIR / "config.yaml"),
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
    ]
    if workers > 1:
        argv += ["--num_workers", str(workers)]
    env = {
        **LITELLM_OFFLINE_ENV,
        "LITELLM_MASTER_KEY": LITELLM_MASTER_KEY,
        # Unused unless the ``paced`` model is called; a closed port when no paced stub runs.
        "AIF_BENCH_PACED_API_BASE": paced_api_base or "http://127.0.0.1:9/v1",
    }
    with launched(
        "litellm" if workers == 1 else f"litellm-{workers}w",
        argv,
        port=port,
        key=LITELLM_MASTER_KEY,
        ready_path="/health/liveliness",
        env=env,
        ready_timeout_s=ready_timeout_s,
    ) as server:
        offline = " ".join(f"{k}={v}" for k, v in LITELLM_OFFLINE_ENV.items())
        server.how = f"{offline} LITELLM_MASTER_KEY=... {server.how}"
        yield server


def litellm_version() -> str:
    exe = ensure_litellm_venv()
    out = subprocess.run(
        [str(exe.parent / "python"), "-c", "import importlib.metadata as m; print(m.version('litellm'))"],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    return out.stdout.strip()


@contextlib.contextmanager
def stub_server(pace_ms: float | None = None, tokens: int = 20) -> Iterator[RunningServer]:
    """The standard-library floor (benchmarks/stub_server.py) in its own process; with ``pace_ms``, a
    paced streaming model (``tokens`` chunks, one every ``pace_ms``)."""
    port = free_port()
    argv = [sys.executable, str(Path(__file__).resolve().parent / "stub_server.py"), "--port", str(port)]
    if pace_ms is not None:
        argv += ["--pace-ms", f"{pace_ms:g}", "--tokens", str(tokens)]
    with launched(
        "stub" if pace_ms is None else "paced-stub", argv, port=port, key="unused", ready_path="/health"
    ) as server:
        yield server


def group_usage(pgid: int) -> tuple[float, int]:
    """(CPU seconds used so far, resident memory in bytes) summed over the process group ``pgid``.

    Read from /proc (Linux), so a server's own CPU cost per request can be reported apart from the
    load client's, which shares the same cores.
    """
    tick = os.sysconf("SC_CLK_TCK")
    page = os.sysconf("SC_PAGE_SIZE")
    cpu, rss = 0.0, 0
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        # Fields after the parenthesised command name: state ppid pgrp ... utime(14) stime(15) ... rss(24)
        rest = stat[stat.rindex(")") + 2 :].split()
        if int(rest[2]) != pgid:
            continue
        cpu += (int(rest[11]) + int(rest[12])) / tick
        rss += int(rest[21]) * page
    return cpu, rss


AIF_KEY_PATTERN = r"\baif-[0-9a-f]{12}-[A-Za-z0-9_\-]{20,}"


def _aif_cli() -> Path | None:
    exe = Path(sys.executable).parent / "ai-factory"
    if not exe.exists():
        return None
    probe = subprocess.run([str(exe), "serve", "--help"], capture_output=True, text=True, timeout=60)
    return exe if probe.returncode == 0 else None


def create_aif_key(home: Path) -> tuple[str, str]:
    """A key for the ``echo`` model with budget and rate limit far above what a benchmark uses.

    Returns (plaintext key, how it was made). Uses ``ai-factory keys create`` when the CLI has it, else
    the same SQLite store through its Python API.
    """
    env = {**os.environ, "AI_FACTORY_HOME": str(home)}
    exe = _aif_cli()
    if exe is not None:
        argv = [
            str(exe), "keys", "create", "--state-dir", str(home), "--team", "bench", "--feature", "load",
            "--models", "echo", "--budget", "100", "--rate-limit", "1000000",
        ]  # fmt: skip
        out = subprocess.run(argv, capture_output=True, text=True, timeout=60, env=env)
        found = re.search(AIF_KEY_PATTERN, out.stdout)
        if out.returncode == 0 and found:
            shown = " ".join(["ai-factory", *argv[1:]]).replace(str(REPO) + "/", "")
            return found.group(0), shown
        print(f"ai-factory keys create failed ({out.returncode}): {out.stderr[-500:]}", file=sys.stderr)
    code = (
        "import sys; from datetime import UTC, datetime;"
        "from aif_gateway.records import ApiKeyRecord, generate_key;"
        "from ai_factory.local.sqlite_store import SqliteKeyStore, default_db_path;"
        "p, i, h = generate_key();"
        "SqliteKeyStore(default_db_path(sys.argv[1])).put(ApiKeyRecord(i, h, 'bench', 'load', ('echo',),"
        " 100.0, 1000000, datetime.now(UTC)));"
        "print(p)"
    )
    out = subprocess.run(
        [sys.executable, "-c", code, str(home)],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
        env=env,
    )
    return out.stdout.strip(), "SqliteKeyStore.put (ai-factory keys create not available)"


@contextlib.contextmanager
def aif_serve(ready_timeout_s: float = 60.0, echo_token_ms: float | None = None) -> Iterator[RunningServer]:
    """``ai-factory serve`` on a fresh state directory, with a key for the offline ``echo`` model.

    Falls back to ``ai_factory.local.server.serve`` in a
    subprocess when the CLI command is not there yet (the report then says so).
    """
    home = BENCH_DIR / "aif-home"
    shutil.rmtree(home, ignore_errors=True)
    home.mkdir(parents=True)
    key, key_how = create_aif_key(home)
    port = free_port()
    exe = _aif_cli()
    if exe is not None:
        argv = [str(exe), "serve", "--port", str(port), "--state-dir", str(home)]
        how = f"ai-factory serve --port {port} --state-dir {home.relative_to(REPO)}"
    else:
        code = f"from ai_factory.local.server import serve; serve(port={port})"
        argv = [sys.executable, "-c", code]
        how = f"python -c {code!r} (ai-factory serve not available)"
    env = {"AI_FACTORY_HOME": str(home)}
    if echo_token_ms is not None:  # the echo model's streaming pace (aif_gateway.providers.EchoProvider)
        env["AIF_ECHO_TOKEN_MS"] = f"{echo_token_ms:g}"
    with launched(
        "ai-factory",
        argv,
        port=port,
        key=key,
        ready_path="/v1/models",
        env=env,
        ready_timeout_s=ready_timeout_s,
    ) as server:
        server.how = f"{key_how}; {how} (AI_FACTORY_HOME={home.relative_to(REPO)})"
        yield server
