"""Run ``ai_factory.training.train`` as an Amazon SageMaker training job.

Needs the optional ``sagemaker`` extra (``pip install 'ai-factory[sagemaker]'``, ~1 GB), imported only
when a job is launched. The job runs the same script as local training, in SageMaker's scikit-learn
framework container (a plain Python image; the classifier needs no scikit-learn), records to the
factory's MLflow tracking server (``MLFLOW_TRACKING_URI`` = its ARN; the job role needs
``MlflowTracking.grant_access``) and registers the model there::

    from ai_factory.training.sagemaker_job import TrainingJobSpec, launch

    launch(TrainingJobSpec(
        role_arn="arn:aws:iam::111122223333:role/ai-factory-training",
        tracking_server_arn="arn:aws:sagemaker:us-east-1:111122223333:mlflow-tracking-server/ai-factory",
        train_uri="s3://my-data/tickets/train.jsonl", validation_uri="s3://my-data/tickets/val.jsonl",
        model_name="ticket-classifier", kms_key_id="arn:aws:kms:...:key/...",
    ))
"""

from __future__ import annotations

import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ai_factory.training.lineage import git_commit

HERE = Path(__file__).parent
ENTRY_POINT = "train_entry.py"
# What the job installs on top of the container (sagemaker-mlflow resolves and signs the ARN URI).
JOB_REQUIREMENTS = ("mlflow==3.17.2", "sagemaker-mlflow>=0.5")
SKLEARN_FRAMEWORK_VERSION = "1.2-1"


class SageMakerSdkMissing(ImportError):
    """The ``sagemaker`` SDK is not installed."""


@dataclass(frozen=True)
class TrainingJobSpec:
    """One training job. ``*_uri`` are S3 URIs (a file or a prefix holding one .jsonl/.csv)."""

    role_arn: str
    tracking_server_arn: str
    train_uri: str
    model_name: str = "ticket-classifier"
    validation_uri: str | None = None
    instance_type: str = "ml.m5.large"
    max_run_s: int = 3600
    kms_key_id: str | None = None  # encrypts the job's volume and its S3 output
    output_path: str | None = None  # s3://... for model.tar.gz; default: SageMaker's default bucket
    hyperparameters: dict[str, Any] = field(default_factory=dict)  # alpha, min-count, min-accuracy
    git_commit: str | None = None  # default: `git rev-parse HEAD` here

    def __post_init__(self) -> None:
        for name in ("train_uri", "validation_uri", "output_path"):
            value = getattr(self, name)
            if value is not None and not str(value).startswith("s3://"):
                raise ValueError(f"TrainingJobSpec: {name}: must be an s3:// URI, got {value!r}")
        if not self.role_arn.startswith("arn:") or ":role/" not in self.role_arn:
            raise ValueError(f"TrainingJobSpec: role_arn: must be an IAM role ARN, got {self.role_arn!r}")
        if ":mlflow-tracking-server/" not in self.tracking_server_arn:
            raise ValueError(
                "TrainingJobSpec: tracking_server_arn: must be a SageMaker MLflow tracking-server ARN, "
                f"got {self.tracking_server_arn!r}"
            )
        unknown = sorted(set(self.hyperparameters) - {"alpha", "min-count", "min-accuracy"})
        if unknown:
            raise ValueError(f"TrainingJobSpec: hyperparameters: unknown {unknown}")


def estimator_arguments(spec: TrainingJobSpec, source_dir: str) -> dict[str, Any]:
    """Keyword arguments for ``sagemaker.sklearn.SKLearn`` (pure: no SDK, no AWS call)."""
    arguments: dict[str, Any] = {
        "entry_point": ENTRY_POINT,
        "source_dir": source_dir,
        "framework_version": SKLEARN_FRAMEWORK_VERSION,
        "py_version": "py3",
        "role": spec.role_arn,
        "instance_type": spec.instance_type,
        "instance_count": 1,
        "max_run": spec.max_run_s,
        "hyperparameters": {"model-name": spec.model_name, **spec.hyperparameters},
        "environment": {
            "MLFLOW_TRACKING_URI": spec.tracking_server_arn,
            "MLFLOW_DISABLE_TELEMETRY": "true",
            "AIF_GIT_COMMIT": spec.git_commit or git_commit(HERE),
        },
        "tags": [{"Key": "aif:model-name", "Value": spec.model_name}],
        "enable_network_isolation": False,  # the job must reach the MLflow tracking server
    }
    if spec.kms_key_id:
        arguments.update(volume_kms_key=spec.kms_key_id, output_kms_key=spec.kms_key_id)
    if spec.output_path:
        arguments["output_path"] = spec.output_path
    return arguments


def fit_inputs(spec: TrainingJobSpec) -> dict[str, str]:
    """The channels: ``train`` and, if given, ``validation`` (SM_CHANNEL_TRAIN / SM_CHANNEL_VALIDATION)."""
    inputs = {"train": spec.train_uri}
    if spec.validation_uri:
        inputs["validation"] = spec.validation_uri
    return inputs


def stage_source(directory: str | Path) -> Path:
    """Copy what the job runs into ``directory``: the training package, an entry point, requirements."""
    root = Path(directory)
    package = root / "ai_factory" / "training"
    package.mkdir(parents=True, exist_ok=True)
    (root / "ai_factory" / "__init__.py").write_text('"""AI Factory (training job subset)."""\n')
    for source in HERE.glob("*.py"):
        if source.name != "sagemaker_job.py":
            shutil.copy2(source, package / source.name)
    (root / ENTRY_POINT).write_text(
        "import sys\n\nfrom ai_factory.training.train import main\n\nsys.exit(main())\n", encoding="utf-8"
    )
    (root / "requirements.txt").write_text("\n".join(JOB_REQUIREMENTS) + "\n", encoding="utf-8")
    return root


def _sklearn_estimator() -> Any:
    try:
        from sagemaker.sklearn.estimator import SKLearn
    except ImportError as exc:
        raise SageMakerSdkMissing(
            "Launching a SageMaker training job needs the sagemaker SDK: pip install 'ai-factory[sagemaker]' "
            "(about 1 GB; local training needs only the mlflow extra)"
        ) from exc
    return SKLearn


def launch(spec: TrainingJobSpec, *, wait: bool = True) -> str:
    """Start the training job (and wait for it by default); returns the job name."""
    estimator_class = _sklearn_estimator()
    with tempfile.TemporaryDirectory(prefix="aif-training-") as tmp:
        source_dir = stage_source(tmp)
        estimator = estimator_class(**estimator_arguments(spec, str(source_dir)))
        estimator.fit(fit_inputs(spec), wait=wait)
        return str(estimator.latest_training_job.name)
