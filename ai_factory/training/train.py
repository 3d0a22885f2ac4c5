"""Train the keyword classifier and record it in MLflow with full lineage; register the model.

The same script runs locally (tests use a sqlite store) and as a SageMaker training job
(``sagemaker_job``), where the inputs arrive as channels (``SM_CHANNEL_TRAIN``,
``SM_CHANNEL_VALIDATION``), the model directory is ``SM_MODEL_DIR`` and ``MLFLOW_TRACKING_URI`` is the
factory's tracking-server ARN::

    python -m ai_factory.training.train --train data/train.jsonl --validation data/val.jsonl \\
        --model-name ticket-classifier --tracking-uri sqlite:///mlruns.db

What lands in MLflow (experiment ``ai-factory/training``): params (hyper-parameters, row counts, file
digests), the datasets as run inputs, metrics (accuracy and macro-F1 on train and validation), the
model (an OpenAI-style chat model, ``chat_model``) registered as a new version of ``--model-name``,
and lineage tags ``aif.lineage.*`` on both the run and the model version (data digests, git commit,
code digest, training job). ``--min-accuracy`` refuses to register a model below the bar.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys
import tempfile
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ai_factory.training.classifier import KeywordClassifier, evaluate
from ai_factory.training.lineage import DatasetError, DatasetFile, Example, describe, git_commit, lineage_tags

EXPERIMENT = "ai-factory/training"
HERE = Path(__file__).parent
MODEL_CODE = HERE / "chat_model.py"
CODE_FILES = (HERE / "classifier.py", MODEL_CODE, Path(__file__))


@dataclass(frozen=True)
class TrainingResult:
    run_id: str
    model_uri: str
    model_name: str
    model_version: str | None  # None when the model was not registered (below --min-accuracy)
    metrics: dict[str, float]
    tags: dict[str, str]


class TrainingError(RuntimeError):
    """Training ran but its result may not be registered (e.g. below ``min_accuracy``)."""


def code_digest() -> str:
    """SHA-256 over the model's code files, so a version says exactly which code produced it."""
    digest = hashlib.sha256()
    for path in CODE_FILES:
        digest.update(path.name.encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()


def train(
    train_path: str | os.PathLike[str],
    *,
    validation_path: str | os.PathLike[str] | None = None,
    model_name: str = "ticket-classifier",
    alpha: float = 1.0,
    min_count: int = 1,
    tracking_uri: str | None = None,
    experiment: str = EXPERIMENT,
    output_dir: str | os.PathLike[str] | None = None,
    min_accuracy: float | None = None,
) -> TrainingResult:
    """Train, log and register; see the module docstring."""
    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
    import mlflow
    from mlflow.data.dataset_source_registry import resolve_dataset_source
    from mlflow.data.meta_dataset import MetaDataset

    datasets: list[DatasetFile] = []
    train_file, train_examples = describe("train", train_path)
    datasets.append(train_file)
    validation_examples: list[Example] = []
    if validation_path is not None:
        validation_file, validation_examples = describe("validation", validation_path)
        datasets.append(validation_file)

    model = KeywordClassifier(alpha=alpha, min_count=min_count).fit(
        [e.text for e in train_examples], [e.label for e in train_examples]
    )
    metrics = {f"train_{k}": v for k, v in _evaluate(model, train_examples).items()}
    if validation_examples:
        metrics.update({f"validation_{k}": v for k, v in _evaluate(model, validation_examples).items()})
    tags = lineage_tags(datasets, code_digest=code_digest(), commit=git_commit(HERE))

    uri = tracking_uri or os.environ.get("MLFLOW_TRACKING_URI") or _local_tracking_uri()
    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(uri)
    if mlflow.get_experiment_by_name(experiment) is None:
        mlflow.create_experiment(experiment, artifact_location=_artifact_location(uri))
    mlflow.set_experiment(experiment)
    with mlflow.start_run(run_name=f"train-{model_name}", tags=tags) as run:
        mlflow.log_params(
            {
                "model_name": model_name,
                "algorithm": "keyword-naive-bayes",
                "alpha": alpha,
                "min_count": min_count,
                "labels": ",".join(sorted(model.priors)),
                **{f"{d.name}_rows": d.rows for d in datasets},
                **{f"{d.name}_sha256": d.sha256 for d in datasets},
            }
        )
        for dataset in datasets:
            # MLflow's dataset record; its digest column is short, the full digest is in params and tags.
            with warnings.catch_warnings():  # "can be interpreted in multiple ways": all local files
                warnings.simplefilter("ignore")
                source = resolve_dataset_source(str(dataset.path))
            meta = MetaDataset(source=source, name=dataset.path.name, digest=dataset.sha256[:32])  # type: ignore[abstract]
            mlflow.log_input(meta, context=dataset.name)
        mlflow.log_metrics(metrics)

        with tempfile.TemporaryDirectory() as tmp:
            weights = Path(tmp) / "classifier.json"
            weights.write_text(json.dumps(model.to_dict(), sort_keys=True), encoding="utf-8")
            if output_dir is not None:  # SageMaker uploads SM_MODEL_DIR to S3 as model.tar.gz
                Path(output_dir).mkdir(parents=True, exist_ok=True)
                (Path(output_dir) / "classifier.json").write_text(weights.read_text(encoding="utf-8"))
            passed = (
                min_accuracy is None
                or metrics.get("validation_accuracy", metrics["train_accuracy"]) >= min_accuracy
            )
            info = mlflow.pyfunc.log_model(
                name="model",
                python_model=str(MODEL_CODE),
                artifacts={"classifier": str(weights)},
                code_paths=[str(HERE / "classifier.py")],
                registered_model_name=model_name if passed else None,
                # Pinned, not inferred: inference imports the model and takes seconds.
                pip_requirements=[f"mlflow=={mlflow.__version__}"],
                input_example={"messages": [{"role": "user", "content": "I was charged twice"}]},
            )
        version = None
        if passed:
            version = str(info.registered_model_version)
            client = mlflow.MlflowClient(tracking_uri=uri, registry_uri=uri)
            for key, value in {**tags, "aif.lineage.run_id": run.info.run_id}.items():
                client.set_model_version_tag(model_name, version, key, value)
        else:
            mlflow.set_tag("aif.registered", "false: below min_accuracy")
    result = TrainingResult(run.info.run_id, info.model_uri, model_name, version, metrics, tags)
    if not passed:
        raise TrainingError(
            f"{model_name}: accuracy below --min-accuracy {min_accuracy}; logged as run {run.info.run_id}, "
            "not registered"
        )
    return result


def _artifact_location(tracking_uri: str) -> str | None:
    """A SQLite store keeps artifacts next to its database (``mlartifacts/``), not in ``./mlruns`` of
    whatever directory training ran in. Other stores (the tracking server) choose for themselves."""
    if not tracking_uri.startswith("sqlite:///"):
        return None
    return (Path(tracking_uri.removeprefix("sqlite:///")).parent / "mlartifacts").resolve().as_uri()


def _local_tracking_uri() -> str:
    # Imported only here: a training job sets MLFLOW_TRACKING_URI and ships only this package.
    from ai_factory.state import default_tracking_uri

    return default_tracking_uri()


def _evaluate(model: KeywordClassifier, examples: list[Example]) -> dict[str, float]:
    return evaluate(model, [e.text for e in examples], [e.label for e in examples])


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m ai_factory.training.train", description=__doc__.split("\n")[0]
    )
    parser.add_argument(
        "--train", default=os.environ.get("SM_CHANNEL_TRAIN"), help="file or channel directory"
    )
    parser.add_argument("--validation", default=os.environ.get("SM_CHANNEL_VALIDATION"))
    parser.add_argument("--model-name", default="ticket-classifier")
    parser.add_argument("--alpha", type=float, default=1.0)
    parser.add_argument("--min-count", type=int, default=1)
    parser.add_argument("--min-accuracy", type=float, default=None)
    parser.add_argument(
        "--tracking-uri", default=None, help="default: $MLFLOW_TRACKING_URI, else the local store"
    )
    parser.add_argument("--experiment", default=EXPERIMENT)
    parser.add_argument("--output-dir", default=os.environ.get("SM_MODEL_DIR"))
    args = parser.parse_args(argv)
    if not args.train:
        parser.error("--train is required (or SM_CHANNEL_TRAIN)")
    try:
        result = train(
            args.train,
            validation_path=args.validation,
            model_name=args.model_name,
            alpha=args.alpha,
            min_count=args.min_count,
            tracking_uri=args.tracking_uri,
            experiment=args.experiment,
            output_dir=args.output_dir,
            min_accuracy=args.min_accuracy,
        )
    except (DatasetError, ValueError) as exc:
        print(f"train: error: {exc}", file=sys.stderr)
        return 2
    except TrainingError as exc:
        print(f"train: refused: {exc}", file=sys.stderr)
        return 1
    summary: dict[str, Any] = {
        "run_id": result.run_id,
        "model": result.model_name,
        "version": result.model_version,
        "metrics": result.metrics,
    }
    print(json.dumps(summary, indent=2, sort_keys=True))
    return 0


if __name__ == "__main__":
    sys.exit(main())
