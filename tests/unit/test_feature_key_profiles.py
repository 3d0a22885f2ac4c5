"""The key provisioner writes the feature's application inference profiles into its key record."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from feature_key_provisioner.handler import ProvisioningError
from moto import mock_aws
from test_feature_key_provisioner import Env

from aif_gateway.records import hash_key

HAIKU_ID = "us.anthropic.claude-haiku-4-5-20251001-v1:0"
NOVA_ID = "us.amazon.nova-lite-v1:0"
HAIKU_ARN = "arn:aws:bedrock:us-east-1:111122223333:application-inference-profile/a1b2c3d4e5f6"
NOVA_ARN = "arn:aws:bedrock:us-east-1:111122223333:application-inference-profile/0f9e8d7c6b5a"


@pytest.fixture
def env() -> Iterator[Env]:
    with mock_aws():
        yield Env()


def test_create_stores_the_profiles_and_update_replaces_them(env: Env) -> None:
    props = env.props(InferenceProfiles={HAIKU_ID: HAIKU_ARN, NOVA_ID: NOVA_ARN})
    key_id = env.provisioner.handle(env.event("Create", ResourceProperties=props))["PhysicalResourceId"]
    record = env.store.get_by_hash(hash_key(env.secret()["api_key"]))
    assert record is not None and record.inference_profiles == {HAIKU_ID: HAIKU_ARN, NOVA_ID: NOVA_ARN}

    # The feature drops a model: its profile leaves the record, the key stays.
    new = env.props(InferenceProfiles={HAIKU_ID: HAIKU_ARN})
    env.provisioner.handle(
        env.event(
            "Update",
            request_id="req-2",
            PhysicalResourceId=key_id,
            ResourceProperties=new,
            OldResourceProperties=props,
        )
    )
    record = env.store.get_by_hash(hash_key(env.secret()["api_key"]))
    assert record is not None and record.key_id == key_id
    assert record.inference_profiles == {HAIKU_ID: HAIKU_ARN}

    # Profiles turned off: the record has none and the gateway calls the catalog IDs.
    env.provisioner.handle(
        env.event(
            "Update",
            request_id="req-3",
            PhysicalResourceId=key_id,
            ResourceProperties=env.props(),
            OldResourceProperties=new,
        )
    )
    record = env.store.get_by_hash(hash_key(env.secret()["api_key"]))
    assert record is not None and record.inference_profiles == {}


def test_a_key_without_the_property_has_no_profiles(env: Env) -> None:
    env.provisioner.handle(env.event("Create"))
    record = env.store.get_by_hash(hash_key(env.secret()["api_key"]))
    assert record is not None and record.inference_profiles == {}


@pytest.mark.parametrize(
    "value",
    [
        ["not", "a", "map"],
        {HAIKU_ID: "arn:aws:bedrock:us-east-1:111122223333:inference-profile/us.anthropic.x"},
        {HAIKU_ID: "anthropic.claude-haiku-4-5-20251001-v1:0"},
        {HAIKU_ID: 42},
    ],
)
def test_anything_but_application_profile_arns_is_refused_before_writing(env: Env, value: object) -> None:
    event = env.event("Create", ResourceProperties=env.props(InferenceProfiles=value))
    with pytest.raises(ProvisioningError, match="InferenceProfiles"):
        env.provisioner.handle(event)
    assert env.items() == []
