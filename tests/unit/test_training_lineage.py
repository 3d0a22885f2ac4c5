"""Training lineage: the training script records params, dataset digests, metrics and a registered model
with lineage tags in MLflow (a local sqlite store), and the SageMaker launcher builds the same job."""

from __future__ import annotations

import hashlib
import json
import os
import sys
from pathlib import Path
from typing import Any

import pytest

from ai_factory.training.classifier import KeywordClassifier, evaluate
from ai_factory.training.lineage import DatasetError, lineage_tags, read_examples, resolve_file
from ai_factory.training.sagemaker_job import (
    SageMakerSdkMissing,
    TrainingJobSpec,
    estimator_arguments,
    fit_inputs,
    launch,
    stage_source,
)

TRAIN = [
    ("I was charged twice for my order", "billing"),
    ("refund the duplicate charge on my card", "billing"),
    ("my invoice shows the wrong amount", "billing"),
    ("the app crashes when I open settings", "bug"),
    ("error 500 when saving my profile", "bug"),
    ("the page is blank after login, it crashes", "bug"),
]
VALIDATION = [("please refund this charge", "billing"), ("it crashes on startup", "bug")]
ROLE = "arn:aws:iam::111122223333:role/ai-factory-training"
SERVER = "arn:aws:sagemaker:us-east-1:111122223333:mlflow-tracking-server/ai-factory"


def write_jsonl(path: Path, rows: list[tuple[str, str]]) -> Path:
    path.write_text("".join(json.dumps({"text": t, "label": label}) + "\n" for t, label in rows))
    return path


def test_classifier_learns_keywords_and_round_trips() -> None:
    model = KeywordClassifier(alpha=0.5).fit([t for t, _ in TRAIN], [label for _, label in TRAIN])
    assert model.predict("refund my charge") == "billing"
    assert model.predict("app crashes") == "bug"
    assert KeywordClassifier.from_dict(json.loads(json.dumps(model.to_dict()))).scores("x") == model.scores(
        "x"
    )
    metrics = evaluate(model, ["refund", "crashes", "refund"], ["billing", "bug", "bug"])
    assert metrics["accuracy"] == pytest.approx(2 / 3)
    assert 0 < metrics["macro_f1"] < 1


def test_datasets_read_jsonl_csv_and_channel_directories(tmp_path: Path) -> None:
    (tmp_path / "a.csv").write_text("text,label\nhello there,greeting\n")
    assert read_examples(tmp_path / "a.csv")[0].label == "greeting"
    channel = tmp_path / "train"
    channel.mkdir()
    write_jsonl(channel / "data.jsonl", TRAIN)
    assert resolve_file(channel) == channel / "data.jsonl"
    assert len(read_examples(channel)) == len(TRAIN)


@pytest.mark.parametrize(
    ("content", "name", "message"),
    [
        ('{"text": "x"}\n', "d.jsonl", r"d.jsonl:1: 'text' and 'label' must be non-empty strings"),
        ("not json\n", "d.jsonl", r"d.jsonl:1: not valid JSON"),
        ("", "d.jsonl", "no examples"),
        ("text,label\nonly text,\n", "d.csv", r"d.csv:2: 'text' and 'label'"),
        ("x", "d.txt", "use a .jsonl or .csv file"),
    ],
)
def test_bad_datasets_name_file_and_row(tmp_path: Path, content: str, name: str, message: str) -> None:
    (tmp_path / name).write_text(content)
    with pytest.raises(DatasetError, match=message):
        read_examples(tmp_path / name)


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    from ai_factory.training.train import train

    root = tmp_path_factory.mktemp("training")
    uri = f"sqlite:///{root / 'mlflow.db'}"
    train_file = write_jsonl(root / "train.jsonl", TRAIN)
    validation_file = write_jsonl(root / "validation.jsonl", VALIDATION)
    os.environ["AIF_GIT_COMMIT"] = "0123456789abcdef"
    try:
        result = train(
            train_file,
            validation_path=validation_file,
            model_name="ticket-classifier",
            alpha=0.5,
            tracking_uri=uri,
            output_dir=root / "model",
        )
    finally:
        os.environ.pop("AIF_GIT_COMMIT")
    return {"result": result, "uri": uri, "root": root, "train": train_file, "validation": validation_file}


def test_run_records_params_digests_inputs_and_metrics(trained: dict[str, Any]) -> None:
    import mlflow

    client = mlflow.MlflowClient(tracking_uri=trained["uri"])
    run = client.get_run(trained["result"].run_id)
    train_sha = hashlib.sha256(trained["train"].read_bytes()).hexdigest()
    assert client.get_experiment(run.info.experiment_id).name == "ai-factory/training"
    assert run.data.params["alpha"] == "0.5"
    assert run.data.params["train_rows"] == "6" and run.data.params["validation_rows"] == "2"
    assert run.data.params["train_sha256"] == train_sha
    assert run.data.params["labels"] == "billing,bug"
    assert run.data.metrics["validation_accuracy"] == 1.0
    assert {"train_accuracy", "train_macro_f1", "validation_macro_f1"} <= set(run.data.metrics)
    assert run.data.tags["aif.lineage.dataset.train.sha256"] == train_sha
    assert run.data.tags["aif.lineage.git_commit"] == "0123456789abcdef"
    contexts = {
        i.dataset.name: [t.value for t in i.tags if t.key == "mlflow.data.context"]
        for i in (run.inputs.dataset_inputs if run.inputs else [])
    }
    assert contexts == {"train.jsonl": ["train"], "validation.jsonl": ["validation"]}
    assert (
        json.loads((trained["root"] / "model" / "classifier.json").read_text())["kind"]
        == "keyword-naive-bayes"
    )


def test_model_version_carries_the_lineage_tags(trained: dict[str, Any]) -> None:
    import mlflow

    result = trained["result"]
    client = mlflow.MlflowClient(tracking_uri=trained["uri"], registry_uri=trained["uri"])
    version = client.get_model_version("ticket-classifier", result.model_version)
    assert version.run_id == result.run_id
    assert version.tags["aif.lineage.run_id"] == result.run_id
    assert (
        version.tags["aif.lineage.dataset.validation.sha256"]
        == hashlib.sha256(trained["validation"].read_bytes()).hexdigest()
    )
    assert version.tags["aif.lineage.training_job"] == "local"
    assert len(version.tags["aif.lineage.code_sha256"]) == 64


def test_registered_model_answers_openai_style_chat(trained: dict[str, Any]) -> None:
    import mlflow

    mlflow.set_tracking_uri(trained["uri"])
    mlflow.set_registry_uri(trained["uri"])
    model = mlflow.pyfunc.load_model(f"models:/ticket-classifier/{trained['result'].model_version}")
    answer = model.predict({"messages": [{"role": "user", "content": "I want a refund for this charge"}]})
    assert answer["choices"][0]["message"]["content"] == "billing"
    assert answer["usage"]["completion_tokens"] == 1


def test_below_min_accuracy_is_logged_but_not_registered(trained: dict[str, Any]) -> None:
    import mlflow

    from ai_factory.training.train import TrainingError, train

    root = trained["root"]
    wrong = write_jsonl(root / "wrong.jsonl", [("refund my charge", "bug"), ("app crashes", "billing")])
    with pytest.raises(TrainingError, match="not registered"):
        train(
            trained["train"],
            validation_path=wrong,
            model_name="refused-model",
            tracking_uri=trained["uri"],
            min_accuracy=0.9,
        )
    client = mlflow.MlflowClient(tracking_uri=trained["uri"], registry_uri=trained["uri"])
    assert client.search_model_versions("name='refused-model'") == []


def test_cli_reports_bad_input_with_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from ai_factory.training.train import main

    assert (
        main(["--train", str(tmp_path / "missing.jsonl"), "--tracking-uri", f"sqlite:///{tmp_path}/m.db"])
        == 2
    )
    assert "missing.jsonl: no such file" in capsys.readouterr().err


def test_lineage_tags_name_every_dataset(tmp_path: Path) -> None:
    from ai_factory.training.lineage import describe

    dataset, _ = describe("train", write_jsonl(tmp_path / "t.jsonl", TRAIN))
    tags = lineage_tags([dataset], code_digest="c" * 64, commit="abc")
    assert tags["aif.lineage.dataset.train.rows"] == "6"
    assert tags["aif.lineage.dataset.train.file"] == "t.jsonl"


# ------------------------------------------------------------------------------------ SageMaker job


def spec(**overrides: Any) -> TrainingJobSpec:
    fields: dict[str, Any] = {
        "role_arn": ROLE,
        "tracking_server_arn": SERVER,
        "train_uri": "s3://data/tickets/train.jsonl",
        "validation_uri": "s3://data/tickets/val.jsonl",
        "kms_key_id": "arn:aws:kms:us-east-1:111122223333:key/abc",
        "hyperparameters": {"alpha": 0.5, "min-accuracy": 0.8},
        "git_commit": "feedbeef",
    }
    fields.update(overrides)
    return TrainingJobSpec(**fields)


def test_job_arguments_run_the_same_script_against_the_tracking_server(tmp_path: Path) -> None:
    arguments = estimator_arguments(spec(), str(tmp_path))
    assert arguments["entry_point"] == "train_entry.py" and arguments["source_dir"] == str(tmp_path)
    assert arguments["environment"]["MLFLOW_TRACKING_URI"] == SERVER
    assert arguments["environment"]["AIF_GIT_COMMIT"] == "feedbeef"
    assert arguments["hyperparameters"] == {
        "model-name": "ticket-classifier",
        "alpha": 0.5,
        "min-accuracy": 0.8,
    }
    assert (
        arguments["volume_kms_key"]
        == arguments["output_kms_key"]
        == "arn:aws:kms:us-east-1:111122223333:key/abc"
    )
    assert fit_inputs(spec()) == {
        "train": "s3://data/tickets/train.jsonl",
        "validation": "s3://data/tickets/val.jsonl",
    }
    assert fit_inputs(spec(validation_uri=None)) == {"train": "s3://data/tickets/train.jsonl"}


def test_staged_source_runs_the_training_script(tmp_path: Path) -> None:
    root = stage_source(tmp_path)
    assert (root / "ai_factory" / "training" / "train.py").is_file()
    assert not (root / "ai_factory" / "training" / "sagemaker_job.py").exists()
    assert "mlflow==3.17.2" in (root / "requirements.txt").read_text()
    entry = (root / "train_entry.py").read_text()
    assert "from ai_factory.training.train import main" in entry


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"train_uri": "/local/file"}, "train_uri: must be an s3:// URI"),
        ({"role_arn": "ai-factory-training"}, "role_arn"),
        ({"tracking_server_arn": "sqlite:///x.db"}, "tracking_server_arn"),
        ({"hyperparameters": {"epochs": 3}}, r"hyperparameters: unknown \['epochs'\]"),
    ],
)
def test_invalid_job_specs_name_the_field(overrides: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=f"TrainingJobSpec: {message}"):
        spec(**overrides)


def test_launch_without_the_sdk_says_how_to_install_it(monkeypatch: pytest.MonkeyPatch) -> None:
    # Make `import sagemaker...` fail even if the SDK happens to be installed.
    for name in [m for m in sys.modules if m == "sagemaker" or m.startswith("sagemaker.")]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, "sagemaker", None)
    with pytest.raises(SageMakerSdkMissing, match=r"pip install 'ai-factory\[sagemaker\]'"):
        launch(spec())
