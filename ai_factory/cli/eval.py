"""``ai-factory eval``: run eval suites against a target, gate on the result, record it in MLflow.

    ai-factory eval SUITE... [--target local|gateway|bedrock] [--out DIR] [--resume] ...
    ai-factory eval changed --base REF      # the suites a branch touched, one path a line
    ai-factory eval safety/prompt-injection --with-prompt features/x/prompts/answer.yaml [--variations all]

Exit codes: 0 every suite's gate passed, 1 a gate failed (or a run could not be carried out),
2 a malformed suite or invalid usage (nothing was run).
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Any, TextIO

from ai_factory.cli.errors import CommandError, UsageError
from aif_gateway import contract

TARGETS = ("local", "gateway", "bedrock")
GATEWAY_URL_ENV = contract.GATEWAY_URL_ENV
DEFAULT_OUT = ".ai-factory/eval-out"  # git ignores .ai-factory/


def add_parser(subparsers: Any) -> None:
    """``ai-factory eval`` (and its ``changed`` form)."""
    p = subparsers.add_parser(
        "eval",
        help="run eval suites and gate on them (or: eval changed --base REF)",
        description="Run eval suites against a target; exit 0 when every gate passed, 1 when one "
        "failed, 2 for a malformed suite. `ai-factory eval changed --base REF` lists the suites whose "
        "suite file, prompt file or the model catalog changed since REF.",
    )
    p.add_argument(
        "suites",
        nargs="+",
        metavar="SUITE",
        help="suite YAML files, shipped suites (safety/prompt-injection, ...), or the word `changed`",
    )
    p.add_argument(
        "--with-prompt",
        metavar="PROMPT",
        help="run shipped suites through this prompt (a prompt file, or a registered prompt's name; "
        "--prompt-version/--prompt-alias pick its version): the attack fills the prompt's variables",
    )
    p.add_argument(
        "--variations",
        metavar="NAMES",
        help="add generated variations of each case: `all` or transform names, comma-separated "
        "(docs/safety-suites.md lists them)",
    )
    p.add_argument("--target", choices=TARGETS, default="local", help="what to run against (default: local)")
    p.add_argument("--gateway-url", help=f"gateway base URL ending in /v1 (default: ${GATEWAY_URL_ENV})")
    p.add_argument(
        "--api-key-env",
        default=contract.API_KEY_ENV,
        help="env var with the gateway API key (default: AIF_API_KEY)",
    )
    which = p.add_mutually_exclusive_group()
    which.add_argument("--prompt-version", type=int, help="evaluate this prompt version (not the suite's)")
    which.add_argument("--prompt-alias", help="evaluate the version this alias names (not the suite's)")
    p.add_argument(
        "--offline-answers",
        metavar="FILE",
        help="with --target local: canned answers for the offline model (YAML rules, docs/evaluation.md)",
    )
    p.add_argument("--concurrency", type=int, default=8, help="case runs in flight (default: 8)")
    p.add_argument(
        "--out",
        default=DEFAULT_OUT,
        help=f"output folder (default: {DEFAULT_OUT}; one sub-folder per suite when several are given)",
    )
    p.add_argument("--resume", action="store_true", help="continue an interrupted run from OUT/runs.jsonl")
    p.add_argument(
        "--tracking-uri",
        help="MLflow tracking URI (default: $MLFLOW_TRACKING_URI, else sqlite in $AI_FACTORY_HOME)",
    )
    p.add_argument("--no-mlflow", action="store_true", help="do not record the run in MLflow")
    p.add_argument("--progress", action="store_true", help="show progress even when stderr is not a TTY")
    p.add_argument("--region", help="AWS region for --target bedrock (default: the AWS SDK's)")
    p.add_argument(
        "--no-metrics",
        action="store_true",
        help="do not publish GatePassRate to CloudWatch (it is published whenever AWS credentials exist)",
    )
    p.add_argument("--team", help="the team GatePassRate is published for (default: features/<team>/...)")
    p.add_argument(
        "--feature", help="the feature GatePassRate is published for (default: the suite's prompt name)"
    )
    p.add_argument("--base", help="with `changed`: the git ref to compare HEAD with (e.g. origin/main)")
    p.set_defaults(run=cmd_eval)


def cmd_eval(args: argparse.Namespace, out: TextIO) -> int:
    if args.suites[0] == "changed" and not Path("changed").exists():
        return cmd_changed(args, out)
    if args.base:
        raise UsageError("--base: only with `ai-factory eval changed`")
    if args.concurrency < 1:
        raise UsageError(f"--concurrency must be at least 1, got {args.concurrency}")
    if args.offline_answers and args.target != "local":
        raise UsageError("--offline-answers: only with --target local (real models answer for themselves)")
    load_offline_script(args.offline_answers)  # a malformed script is a usage error before any run
    from ai_factory.evals.safety import UnknownSuite, is_shipped_ref, shipped_suite_path
    from ai_factory.evals.suite import SuiteError, load_suite

    suites, errors = [], []
    for path in args.suites:  # every suite is checked before any model is called
        try:
            suites.append(load_suite(shipped_suite_path(path) if is_shipped_ref(path) else path))
        except (SuiteError, UnknownSuite) as exc:
            errors.append(str(exc))
    names = [s.name for s in suites]
    if not errors and len(set(names)) != len(names):
        errors.append("two suites share a name: their outputs would overwrite each other")
    if errors:
        raise UsageError("malformed suite(s):\n  " + "\n  ".join(errors))
    if args.variations:  # before binding: variations rewrite the shipped cases' `input`
        from ai_factory.evals.variations import UnknownTransform, expand, select

        try:
            transforms = select(n.strip() for n in args.variations.split(",") if n.strip())
            suites = [expand(s, transforms) for s in suites]
        except (UnknownTransform, ValueError) as exc:
            raise UsageError(f"--variations: {exc}") from exc
    args.bound_prompt = None
    if args.with_prompt:
        suites = _bind(args, suites)
    elif (args.prompt_version is not None or args.prompt_alias) and any(s.prompt is None for s in suites):
        raise UsageError("--prompt-version/--prompt-alias: a suite given has no prompt")
    passed = True
    for suite in suites:
        folder = Path(args.out) if len(suites) == 1 else Path(args.out) / suite.name
        passed = _run_one(args, suite, folder, out) and passed
    return 0 if passed else 1


def _bind(args: argparse.Namespace, suites: list[Any]) -> list[Any]:
    """Shipped suites bound to ``--with-prompt`` (a prompt file, or a registered prompt)."""
    from ai_factory.evals.safety import UnknownSuite, bind_to_prompt
    from ai_factory.evals.targets import ResolvedPrompt

    source = Path(args.with_prompt)
    if source.is_file():
        from ai_factory.prompts.spec import PromptFileError, load_prompt_file

        try:
            spec = load_prompt_file(source)
        except PromptFileError as exc:
            raise UsageError(f"--with-prompt: {exc}") from exc
        if args.prompt_version is not None or args.prompt_alias:
            raise UsageError("--prompt-version/--prompt-alias: only with a registered prompt, not a file")
        prompt = ResolvedPrompt(
            spec.name,
            None,
            None,
            tuple(dict(m) for m in spec.messages),
            spec.model,
            dict(spec.parameters),
            str(source),
        )
    else:
        from ai_factory.evals.model import PromptRef, Suite

        registry = _registry(args)
        if registry is None:
            raise UsageError(
                f"--with-prompt: {args.with_prompt!r} is not a file and --no-mlflow leaves no registry"
            )
        probe = Suite(args.with_prompt, source, "", (), suites[0].gate, prompt=PromptRef(args.with_prompt))
        prompt = _resolve(args, probe, registry, need_template=True)
    try:
        bound = [bind_to_prompt(s, prompt) for s in suites]
    except UnknownSuite as exc:
        raise UsageError(f"--with-prompt: {exc}") from exc
    args.bound_prompt = prompt
    return bound


def load_offline_script(path: str | None) -> Any:
    """The offline model's canned answers from a YAML file (None: no file, no script)."""
    if not path:
        return None
    import yaml

    from aif_gateway.offline_model import OfflineScript, ScriptError

    try:
        data = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
        return OfflineScript.from_data(data, source=path)
    except OSError as exc:
        raise UsageError(f"--offline-answers: cannot read {path}: {exc.strerror or exc}") from exc
    except (yaml.YAMLError, ScriptError) as exc:
        raise UsageError(f"--offline-answers: {exc}") from exc


def _registry(args: argparse.Namespace) -> Any:
    """The prompt registry to pin prompt versions with: where the eval is recorded (or --tracking-uri)."""
    if args.no_mlflow and not args.tracking_uri:
        return None
    from ai_factory.prompts.registry import PromptRegistry

    return PromptRegistry(args.tracking_uri)


def _resolve(args: argparse.Namespace, suite: Any, registry: Any, need_template: bool) -> Any:
    from ai_factory.evals.targets import TargetError, resolve_prompt

    kwargs = {"version": args.prompt_version, "alias": args.prompt_alias, "need_template": need_template}
    if suite.prompt is None:
        return None
    if getattr(args, "bound_prompt", None) is not None:
        return args.bound_prompt  # --with-prompt: resolved once, for every suite
    if registry is not None:
        from ai_factory.prompts.registry import PromptNotFound

        try:
            registry.get(suite.prompt.name)  # registered at all? (the version/alias is checked below)
        except PromptNotFound:
            print(
                f"ai-factory eval: prompt {suite.prompt.name!r} is not in the registry at "
                f"{registry.tracking_uri}: its version is recorded as 'unresolved'",
                file=sys.stderr,
            )
            registry = None
    try:
        return resolve_prompt(suite, registry, **kwargs)
    except TargetError as exc:
        raise UsageError(str(exc)) from exc


def _target(args: argparse.Namespace, suite: Any, registry: Any) -> tuple[Any, Any]:
    from ai_factory.evals.targets import BedrockTarget, GatewayTarget, LocalTarget, TargetError

    try:
        if args.target == "local":
            prompt = _resolve(args, suite, registry, need_template=True)
            return LocalTarget(prompt=prompt, script=load_offline_script(args.offline_answers)), prompt
        if args.target == "bedrock":
            prompt = _resolve(args, suite, registry, need_template=True)
            return BedrockTarget(prompt=prompt, region=args.region), prompt
        url = args.gateway_url or os.environ.get(GATEWAY_URL_ENV)
        if not url:
            raise UsageError(f"--gateway-url (or ${GATEWAY_URL_ENV}) is required with --target gateway")
        key = os.environ.get(args.api_key_env)
        if not key:
            raise UsageError(f"--api-key-env: environment variable {args.api_key_env} is not set")
        prompt = _resolve(args, suite, registry, need_template=False)
        return GatewayTarget(url, key, prompt=prompt), prompt
    except TargetError as exc:
        raise UsageError(str(exc)) from exc


def _scorer(target: Any, prompt: Any) -> tuple[Any, list[Any]]:
    """Assertions judge and embed through the target's gateway (Bedrock: no judge, no embeddings); the
    local target's offline model cannot judge, so it grades with the offline judge (groundedness only).
    Returns the scorer and the clients to close after the run."""
    from ai_factory.evals import assertions
    from ai_factory.evals.offline_judge import OfflineJudge
    from ai_factory.evals.runner import default_scorer
    from ai_factory.evals.targets import LocalTarget, input_text

    base_url = getattr(target, "base_url", None)
    if base_url is None:
        return default_scorer(input_text=input_text(prompt)), []
    judge: Any = (
        OfflineJudge()
        if isinstance(target, LocalTarget)
        else assertions.GatewayJudge(base_url, target.api_key)
    )
    embedder = assertions.GatewayEmbedder(base_url, target.api_key)
    return default_scorer(judge=judge, embedder=embedder, input_text=input_text(prompt)), [judge, embedder]


def _run_one(args: argparse.Namespace, suite: Any, folder: Path, out: TextIO) -> bool:
    from ai_factory.evals.runner import ResumeError, execute

    registry = _registry(args)
    target, prompt = _target(args, suite, registry)
    version = prompt.version_label if prompt is not None else "n/a"
    score, clients = _scorer(target, prompt)
    try:
        result = execute(
            suite,
            target,
            out_dir=folder,
            concurrency=args.concurrency,
            resume=args.resume,
            prompt_version=version,
            score=score,
            progress=True if args.progress else None,
        )
    except ResumeError as exc:
        raise UsageError(f"--resume: {exc}") from exc
    finally:
        for client in (target, *clients):
            client.close()
    verdict = result.verdict
    status = "PASSED" if verdict.passed else "FAILED"
    passed_cases = sum(1 for c in verdict.cases if c.passed)
    label = f" ({suite.prompt.name} v{version})" if suite.prompt else ""
    print(
        f"{suite.name}{label}: {status}: {passed_cases}/{len(verdict.cases)} cases passed "
        f"(pass rate {verdict.pass_rate:.2f}, needs {suite.gate.min_pass_rate:.2f}), "
        f"{result.executed} runs made, {result.resumed} resumed, target {result.target} -> {folder}",
        file=out,
    )
    for reason in verdict.reasons:
        print(f"  - {reason}", file=out)
    if not args.no_mlflow:
        from ai_factory.evals.mlflow_log import log_eval

        model = prompt.model if prompt is not None else suite.model
        try:
            run_id = log_eval(result, tracking_uri=args.tracking_uri, model=model)
        except Exception as exc:
            raise CommandError(f"the eval ran but could not be recorded in MLflow: {exc}") from exc
        print(f"  MLflow run {run_id} (experiment ai-factory/evals)", file=out)
    if not args.no_metrics:
        _publish_gate_metric(args, suite, verdict.pass_rate, out)
    return bool(verdict.passed)


def _publish_gate_metric(args: argparse.Namespace, suite: Any, pass_rate: float, out: TextIO) -> None:
    """``GatePassRate`` for the suite (Team, Feature, Suite), or a line saying why it was not sent."""
    from ai_factory.evals.gate_metrics import PublishError, dimensions_for, publish_pass_rate

    dims = dimensions_for(suite, team=args.team, feature=args.feature)
    where = f"Team={dims.team}, Feature={dims.feature}, Suite={dims.suite}"
    try:
        sent = publish_pass_rate(dims, pass_rate, region=args.region)
    except PublishError as exc:
        raise CommandError(f"the eval ran but its metric was not published: {exc}") from exc
    if sent:
        print(f"  {contract.GATE_PASS_RATE.name} {pass_rate:.2f} published ({where})", file=out)
    else:
        print(
            f"  {contract.GATE_PASS_RATE.name} not published: no AWS credentials found (a local run; "
            "--no-metrics silences this)",
            file=out,
        )


def cmd_changed(args: argparse.Namespace, out: TextIO) -> int:
    from ai_factory.evals.changed import GitError, changed_suites

    if len(args.suites) != 1:
        raise UsageError("`eval changed` takes no suite files, only --base REF")
    if not args.base:
        raise UsageError("--base is required with `eval changed` (e.g. --base origin/main)")
    try:
        for path in changed_suites(args.base):
            print(path, file=out)
    except GitError as exc:
        raise CommandError(f"git: {exc}") from exc
    return 0
