"""The prompt-publication custom resource against moto's S3: publishes, is idempotent, never undoes the
registry's decisions, and does not lose a concurrent deploy's prompts."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import boto3
import pytest
from moto import mock_aws
from prompt_publisher.handler import PromptPublisher, PublishError

from aif_gateway.prompt_view import parse_view

BUCKET = "prompts-bucket"
T0 = datetime(2026, 12, 3, 12, 0, tzinfo=UTC)


def prompt(
    name: str = "support-summarize", text: str = "Summarize: {{ ticket }}", **extra: Any
) -> dict[str, Any]:
    return {
        "name": name,
        "hash": "sha256:" + hashlib.sha256(f"{name}|{text}".encode()).hexdigest(),
        "model": "chat-fast",
        "parameters": {"temperature": 0.2, "max_tokens": 300},
        "messages": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": text}],
        "variables": ["ticket"],
        **extra,
    }


class Env:
    def __init__(self) -> None:
        self.s3 = boto3.client("s3", region_name="us-east-1")
        self.s3.create_bucket(Bucket=BUCKET)
        self.s3.put_bucket_versioning(Bucket=BUCKET, VersioningConfiguration={"Status": "Enabled"})
        self.publisher = PromptPublisher(self.s3, now=lambda: T0)

    def event(
        self, request: str, prompts: list[dict[str, Any]], feature: str = "summarizer", **extra: Any
    ) -> dict:
        return {
            "RequestType": request,
            "StackId": "arn:aws:cloudformation:us-east-1:111122223333:stack/AiFactoryTeamSupport/abc",
            "LogicalResourceId": "SummarizerPrompts",
            "ResourceProperties": {
                "ServiceToken": "arn:aws:lambda:us-east-1:111122223333:function:provider",
                "Bucket": BUCKET,
                "Key": "prompts.json",
                "Team": "support",
                "Feature": feature,
                "Prompts": json.dumps(prompts),
            },
            **extra,
        }

    def view(self) -> dict[str, Any]:
        return json.loads(self.s3.get_object(Bucket=BUCKET, Key="prompts.json")["Body"].read())

    def versions(self) -> int:
        return len(self.s3.list_object_versions(Bucket=BUCKET, Prefix="prompts.json").get("Versions", []))


@pytest.fixture
def env() -> Iterator[Env]:
    with mock_aws():
        yield Env()


def test_create_publishes_the_prompts_with_production_pointing_at_them(env: Env) -> None:
    response = env.publisher.handle(env.event("Create", [prompt()]))

    assert response["PhysicalResourceId"] == f"{BUCKET}/prompts.json#support/summarizer"
    view = env.view()
    entry = view["prompts"]["support-summarize"]
    assert entry["aliases"] == {"production": "1"}
    assert entry["versions"]["1"]["parameters"] == {
        "temperature": 0.2,
        "max_tokens": 300,
    }  # numbers stay numbers
    # The gateway reads it: the canary's default alias resolves instead of 404 prompt_not_found.
    resolved = parse_view(view).resolve("support-summarize")
    assert resolved.version == "1" and resolved.model == "chat-fast"
    assert view["generated_at"] == "2026-12-03T12:00:00Z"


def test_publishing_the_same_prompts_again_writes_nothing(env: Env) -> None:
    env.publisher.handle(env.event("Create", [prompt()]))
    before = (env.view(), env.versions())

    again = env.publisher.handle(env.event("Update", [prompt()], PhysicalResourceId="x"))

    assert (env.view(), env.versions()) == before
    assert again["Data"]["Changed"] == "False"


def test_new_content_becomes_the_next_version_and_production_stays_where_the_registry_put_it(
    env: Env,
) -> None:
    env.publisher.handle(env.event("Create", [prompt()]))

    env.publisher.handle(env.event("Update", [prompt(text="Summarize in 3 bullets: {{ ticket }}")]))

    entry = env.view()["prompts"]["support-summarize"]
    assert sorted(entry["versions"]) == ["1", "2"]
    assert entry["aliases"] == {"production": "1"}, "moving production is a gated promote, not a deploy"


def test_a_view_published_by_the_registry_is_kept(env: Env) -> None:
    registry_view = {
        "schema": 1,
        "generated_at": "2026-12-01T00:00:00Z",
        "prompts": {
            "support-summarize": {
                "versions": {
                    "1": {k: v for k, v in prompt().items() if k != "name"},
                    "2": {k: v for k, v in prompt(text="v2 {{ ticket }}").items() if k != "name"},
                },
                "aliases": {"production": "2", "staging": "2"},
            },
            "other-team-prompt": {
                "versions": {"1": {k: v for k, v in prompt("x").items() if k != "name"}},
                "aliases": {"production": "1"},
            },
        },
    }
    env.s3.put_object(Bucket=BUCKET, Key="prompts.json", Body=json.dumps(registry_view).encode())

    env.publisher.handle(env.event("Create", [prompt()]))  # content the registry already has as v1

    assert env.view() == registry_view, "nothing missing: the view is not rewritten"


def test_two_features_deploying_at_once_both_land(env: Env) -> None:
    """A write between this publisher's read and its write makes the conditional put fail; it merges again."""
    other = PromptPublisher(env.s3, now=lambda: T0)
    real_get = env.s3.get_object
    raced = []

    def get_then_race(**kwargs: Any) -> Any:
        response = real_get(**kwargs)
        if not raced:
            raced.append(True)
            other.handle(
                env.event("Create", [prompt("knowledge-answer", "Answer: {{ ticket }}")], feature="qa")
            )
        return response

    env.s3.get_object = get_then_race  # type: ignore[method-assign]
    env.s3.put_object(
        Bucket=BUCKET, Key="prompts.json", Body=json.dumps({"schema": 1, "prompts": {}}).encode()
    )

    env.publisher.handle(env.event("Create", [prompt()]))

    assert set(env.view()["prompts"]) == {"support-summarize", "knowledge-answer"}


def test_delete_leaves_the_view_as_it_is(env: Env) -> None:
    env.publisher.handle(env.event("Create", [prompt()]))
    before = env.view()

    response = env.publisher.handle(
        env.event("Delete", [prompt()], PhysicalResourceId=f"{BUCKET}/prompts.json#support/summarizer")
    )

    assert env.view() == before
    assert response["PhysicalResourceId"] == f"{BUCKET}/prompts.json#support/summarizer"


@pytest.mark.parametrize(
    ("body", "match"),
    [(b"not json", "is not JSON"), (json.dumps({"schema": 2}).encode(), "not a schema-1 prompt view")],
)
def test_a_broken_view_fails_the_deploy_with_the_way_out(env: Env, body: bytes, match: str) -> None:
    env.s3.put_object(Bucket=BUCKET, Key="prompts.json", Body=body)
    with pytest.raises(PublishError, match=f"{match}.*ai-factory prompts publish"):
        env.publisher.handle(env.event("Create", [prompt()]))


@pytest.mark.parametrize(
    ("field", "value"), [("Bucket", ""), ("Prompts", "{not json"), ("Prompts", '{"a": 1}')]
)
def test_invalid_properties_fail_with_the_property_named(env: Env, field: str, value: str) -> None:
    event = env.event("Create", [prompt()])
    event["ResourceProperties"][field] = value
    with pytest.raises(PublishError, match=field):
        env.publisher.handle(event)
