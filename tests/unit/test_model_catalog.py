"""ModelCatalog: every validation rule, the runtime config and the IAM allow-list it derives."""

from __future__ import annotations

import copy
import json
import re
import warnings
from datetime import date
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ai_factory.catalog.model_catalog import CatalogError, CatalogWarning, ComplianceNotes, ModelCatalog
from aif_gateway.config import GatewayConfig, Prices
from tests.catalog_evidence import PASSING_EVIDENCE

APPROVAL = {"approved_by": "ai-review@example.com", "approved_on": "2026-11-24"}


def base() -> dict[str, Any]:
    return {
        "models": [
            {
                "name": "haiku",
                "provider": "bedrock",
                "modality": "chat",
                "model_id": "anthropic.haiku-v1:0",
                "inference_profile": "us.anthropic.haiku-v1:0",
                "regions": ["us-east-1", "us-west-2"],
                "prices": {"input": 1.0, "output": 5.0, "cache_read": 0.1, "cache_write": 1.25},
                "status": "approved",
                "evidence": PASSING_EVIDENCE,
                "owner": "platform-team",
                "context_window": 200000,
                **APPROVAL,
            },
            {
                "name": "nova",
                "provider": "bedrock",
                "modality": "chat",
                "model_id": "amazon.nova-lite-v1:0",
                "regions": ["us-east-1"],
                "prices": {"input": 0.06, "output": 0.24},
                "status": "approved",
                "evidence": PASSING_EVIDENCE,
                "owner": "platform-team",
                "context_window": 300000,
                **APPROVAL,
            },
            {
                "name": "titan",
                "provider": "bedrock",
                "modality": "embedding",
                "model_id": "amazon.titan-embed-text-v2:0",
                "regions": ["us-east-1"],
                "prices": {"input": 0.02},
                "status": "approved",
                "evidence": PASSING_EVIDENCE,
                "owner": "platform-team",
                **APPROVAL,
            },
            {
                "name": "echo",
                "provider": "echo",
                "modality": "chat",
                "prices": {},
                "status": "approved",
                "evidence": PASSING_EVIDENCE,
            },
        ],
        "routes": [
            {"alias": "chat", "targets": ["haiku", "nova"]},
            {"alias": "embed", "targets": ["titan"]},
            {"alias": "echo", "targets": ["echo"]},
        ],
    }


def model(data: dict[str, Any], name: str) -> dict[str, Any]:
    return next(m for m in data["models"] if m["name"] == name)


def write(tmp_path: Path, data: Any) -> Path:
    path = tmp_path / "models.yaml"
    path.write_text(yaml.safe_dump(data), encoding="utf-8")
    return path


def load_error(tmp_path: Path, data: Any) -> str:
    path = write(tmp_path, data)
    with pytest.raises(CatalogError) as info:
        ModelCatalog.load(path)
    message = str(info.value)
    assert str(path) in message, "every error names the file"
    return message


# ------------------------------------------------------------------------------------------ happy path


def test_packaged_catalog_loads_and_routes_resolve() -> None:
    catalog = ModelCatalog.load()
    assert {"chat-fast", "chat-smart", "embed", "echo", "echo-embed"} <= set(catalog.routes)
    assert catalog.routes["embed"].modality == "embedding"
    assert catalog.models["claude-haiku-4-5"].prices == Prices(1.0, 5.0, 0.10, 1.25)


def test_valid_catalog_keeps_unknown_optional_fields(tmp_path: Path) -> None:
    data = base()
    model(data, "haiku")["review_ticket"] = "SEC-1234"
    catalog = ModelCatalog.load(write(tmp_path, data))
    haiku = catalog.models["haiku"]
    assert haiku.extra == {"review_ticket": "SEC-1234"}
    assert haiku.review_ticket == "SEC-1234"
    assert haiku.owner == "platform-team"
    assert haiku.context_window == 200000
    assert haiku.compliance_notes is None and haiku.known_limitations == ()
    with pytest.raises(AttributeError):
        _ = haiku.no_such_field
    assert copy.deepcopy(haiku) == haiku


def test_missing_price_keys_are_zero_and_echo_model_id_defaults_to_name(tmp_path: Path) -> None:
    catalog = ModelCatalog.load(write(tmp_path, base()))
    assert catalog.models["titan"].prices == Prices(input=0.02)
    assert catalog.models["echo"].prices == Prices()
    assert catalog.models["echo"].model_id == "echo"


def test_gateway_config_uses_inference_profile_and_overrides(tmp_path: Path) -> None:
    config = ModelCatalog.load(write(tmp_path, base())).gateway_config(model_timeout_s=12.5)
    assert isinstance(config, GatewayConfig)
    assert config.model_timeout_s == 12.5
    chat = config.routes["chat"]
    assert chat.modality == "chat"
    assert [t.name for t in chat.targets] == ["haiku", "nova"]
    assert chat.targets[0].model_id == "us.anthropic.haiku-v1:0"
    assert chat.targets[1].model_id == "amazon.nova-lite-v1:0"
    assert all(t.region is None for t in chat.targets)
    assert config.routes["embed"].targets[0].prices == Prices(input=0.02)
    # The JSON staged into the Lambda round-trips.
    assert GatewayConfig.from_dict(json.loads(config.to_json())) == config


def test_bedrock_invoke_arns(tmp_path: Path) -> None:
    data = base()
    data["models"].append(
        {
            "name": "unrouted",
            "provider": "bedrock",
            "modality": "chat",
            "model_id": "x.unrouted",
            "regions": ["eu-west-1"],
            "prices": {},
            "status": "approved",
            "evidence": PASSING_EVIDENCE,
            "owner": "platform-team",
            "context_window": 1000,
            **APPROVAL,
        }
    )
    data["routes"].append({"alias": "chat-2", "targets": ["nova"]})  # nova used twice: deduplicated
    arns = ModelCatalog.load(write(tmp_path, data)).bedrock_invoke_arns("aws", "us-east-1", "111122223333")
    assert arns == sorted(
        [
            "arn:aws:bedrock:us-east-1:111122223333:inference-profile/us.anthropic.haiku-v1:0",
            "arn:aws:bedrock:us-east-1::foundation-model/anthropic.haiku-v1:0",
            "arn:aws:bedrock:us-west-2::foundation-model/anthropic.haiku-v1:0",
            "arn:aws:bedrock:us-east-1::foundation-model/amazon.nova-lite-v1:0",
            "arn:aws:bedrock:us-east-1::foundation-model/amazon.titan-embed-text-v2:0",
        ]
    )
    assert not any("unrouted" in a or "echo" in a for a in arns)


def test_deprecated_model_in_route_warns_with_name_and_date(tmp_path: Path) -> None:
    data = base()
    model(data, "nova").update(status="deprecated", deprecated_on="2026-03-31")
    with pytest.warns(CatalogWarning, match=r"'nova'.*2026-03-31"):
        catalog = ModelCatalog.load(write(tmp_path, data))
    assert catalog.models["nova"].deprecated_on == date(2026, 3, 31)


def test_deprecated_model_not_in_any_route_does_not_warn(tmp_path: Path) -> None:
    data = base()
    data["models"].append(
        {**model(data, "nova"), "name": "old", "status": "deprecated", "deprecated_on": "2025-01-01"}
    )
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        ModelCatalog.load(write(tmp_path, data))


def test_blocked_and_preview_models_may_stay_in_catalog_unrouted(tmp_path: Path) -> None:
    data = base()
    data["models"].append({**model(data, "nova"), "name": "blocked-one", "status": "blocked"})
    data["models"].append({**model(data, "nova"), "name": "preview-one", "status": "preview"})
    catalog = ModelCatalog.load(write(tmp_path, data))
    assert catalog.models["blocked-one"].status == "blocked"


# ------------------------------------------------------------------------------------------ each rule


@pytest.mark.parametrize(
    ("mutate", "expected"),
    [
        (lambda d: model(d, "nova").pop("name"), r"models\[1\]: field 'name': is required"),
        (lambda d: model(d, "nova").update(name=""), r"field 'name': must be a non-empty string"),
        (lambda d: model(d, "nova").update(name=3), r"field 'name': must be a non-empty string"),
        (lambda d: model(d, "nova").pop("provider"), r"model 'nova': field 'provider': is required"),
        (
            lambda d: model(d, "nova").update(provider="vertex"),
            r"model 'nova': field 'provider': must be one of",
        ),
        (
            lambda d: model(d, "nova").update(modality="image"),
            r"model 'nova': field 'modality': must be one of",
        ),
        (lambda d: model(d, "nova").pop("status"), r"model 'nova': field 'status': is required"),
        (lambda d: model(d, "nova").update(status="ok"), r"model 'nova': field 'status': must be one of"),
        (lambda d: model(d, "nova").pop("model_id"), r"model 'nova': field 'model_id': is required"),
        (
            lambda d: model(d, "nova").pop("regions"),
            r"model 'nova': field 'regions': is required for bedrock",
        ),
        (
            lambda d: model(d, "nova").update(regions=[]),
            r"model 'nova': field 'regions': is required for bedrock",
        ),
        (
            lambda d: model(d, "nova").update(regions="us-east-1"),
            r"model 'nova': field 'regions': must be a list",
        ),
        (
            lambda d: model(d, "nova").update(regions=["a", "a"]),
            r"model 'nova': field 'regions': lists an item",
        ),
        (
            lambda d: model(d, "echo").update(inference_profile="x"),
            r"model 'echo': field 'inference_profile'",
        ),
        (lambda d: model(d, "nova").pop("prices"), r"model 'nova': field 'prices': is required"),
        (
            lambda d: model(d, "nova").update(prices=[1, 2]),
            r"model 'nova': field 'prices': must be a mapping",
        ),
        (
            lambda d: model(d, "nova").update(prices={"ouput": 1}),
            r"model 'nova': field 'prices': unknown key",
        ),
        (
            lambda d: model(d, "nova").update(prices={"input": -1}),
            r"model 'nova': field 'prices.input': must be a non-neg",
        ),
        (
            lambda d: model(d, "nova").update(prices={"output": "1"}),
            r"field 'prices.output': must be a non-negative",
        ),
        (
            lambda d: model(d, "nova").update(prices={"cache_read": True}),
            r"field 'prices.cache_read': must be a non-neg",
        ),
        (
            lambda d: model(d, "nova").update(prices={"cache_write": float("nan")}),
            r"field 'prices.cache_write'",
        ),
        (
            lambda d: model(d, "nova").update(status="deprecated"),
            r"model 'nova': field 'deprecated_on': is required",
        ),
        (
            lambda d: model(d, "nova").update(status="deprecated", deprecated_on="31/03/2026"),
            r"model 'nova': field 'deprecated_on': must be a date YYYY-MM-DD",
        ),
        (
            lambda d: model(d, "nova").update(status="deprecated", deprecated_on="2026-02-30"),
            r"field 'deprecated_on': must be a date",
        ),
        (
            lambda d: d["models"].append(dict(model(d, "nova"))),
            r"model 'nova': field 'name': is used by more than one",
        ),
        (
            lambda d: d["routes"].append({"alias": "chat", "targets": ["nova"]}),
            r"route 'chat': field 'alias': is used",
        ),
        (lambda d: d["routes"][0].pop("alias"), r"routes\[0\]: field 'alias': is required"),
        (
            lambda d: d["routes"][0].update(targets=[]),
            r"route 'chat': field 'targets': must list at least one",
        ),
        (lambda d: d["routes"][0].update(targets="haiku"), r"route 'chat': field 'targets': must be a list"),
        (
            lambda d: d["routes"][0].update(targets=["haiku", "gpt"]),
            r"route 'chat': field 'targets': names unknown model 'gpt'",
        ),
        (
            lambda d: d["routes"][0].update(targets=["haiku", "titan"]),
            r"route 'chat': field 'targets': mixes modalities",
        ),
        (
            lambda d: model(d, "nova").update(status="blocked"),
            r"route 'chat': field 'targets': names blocked model 'nova'",
        ),
        (
            lambda d: model(d, "nova").update(status="preview"),
            r"route 'chat': field 'targets': names preview model 'nova'",
        ),
        (lambda d: d.pop("routes"), r"top level: field 'routes': must be a list"),
        (lambda d: d.update(models={"a": 1}), r"top level: field 'models': must be a list"),
        (lambda d: d["models"].append("nova"), r"models\[4\]: must be a mapping"),
        (lambda d: d["routes"].append(["x"]), r"routes\[3\]: must be a mapping"),
    ],
)
def test_each_rule_names_file_entry_and_field(tmp_path: Path, mutate: Any, expected: str) -> None:
    data = base()
    mutate(data)
    message = load_error(tmp_path, data)
    assert re.search(expected, message), message


def test_not_a_mapping_and_bad_yaml_and_missing_file(tmp_path: Path) -> None:
    assert "must be a mapping" in load_error(tmp_path, ["models"])
    path = tmp_path / "broken.yaml"
    path.write_text("models: [\n", encoding="utf-8")
    with pytest.raises(CatalogError, match="not valid YAML"):
        ModelCatalog.load(path)
    with pytest.raises(CatalogError, match="cannot read"):
        ModelCatalog.load(tmp_path / "missing.yaml")


def test_unquoted_yaml_date_is_accepted(tmp_path: Path) -> None:
    data = base()
    model(data, "nova").update(status="deprecated", deprecated_on=date(2026, 1, 31))
    path = write(tmp_path, data)
    assert "deprecated_on: 2026-01-31" in path.read_text()  # unquoted: YAML reads it back as a date
    with pytest.warns(CatalogWarning):
        assert ModelCatalog.load(path).models["nova"].deprecated_on == date(2026, 1, 31)


# ------------------------------------------------------------------------------------------ documentation


def documented() -> dict[str, Any]:
    """base() with every documentation field on haiku, and a per-region ID map."""
    data = base()
    model(data, "haiku").update(
        provider_name="Anthropic",
        max_output_tokens=64000,
        regional_ids={
            "us-": "us.anthropic.haiku-v1:0",
            "eu-": "eu.anthropic.haiku-v1:0",
            "eu-central-": "anthropic.haiku-v1:0",
            "eu-west-3": "global.anthropic.haiku-v1:0",
        },
        regions=["us-east-1", "us-west-2", "eu-central-1", "eu-west-1"],
        evaluated_on=["mlflow:runs/abc123", "docs/evals/haiku.md"],
        compliance_notes={
            "data_residency": "us- in the US, eu- in the EU",
            "provider_terms": "https://example.com/terms",
            "notes": "no training on prompts",
        },
        known_limitations=["temperature range 0-1", "no image output"],
    )
    return data


def test_documentation_fields_are_parsed(tmp_path: Path) -> None:
    haiku = ModelCatalog.load(write(tmp_path, documented())).models["haiku"]
    assert (haiku.provider_name, haiku.owner, haiku.context_window, haiku.max_output_tokens) == (
        "Anthropic",
        "platform-team",
        200000,
        64000,
    )
    assert (haiku.approved_by, haiku.approved_on) == ("ai-review@example.com", date(2026, 11, 24))
    assert haiku.evaluated_on == ("mlflow:runs/abc123", "docs/evals/haiku.md")
    assert haiku.compliance_notes == ComplianceNotes(
        "us- in the US, eu- in the EU", "https://example.com/terms", "no training on prompts"
    )
    assert haiku.known_limitations == ("temperature range 0-1", "no image output")
    assert haiku.extra == {}


def test_echo_models_need_no_documentation_and_preview_needs_no_approver(tmp_path: Path) -> None:
    data = base()
    data["models"].append({**model(data, "nova"), "name": "trial", "status": "preview"})
    for key in ("approved_by", "approved_on"):
        model(data, "trial").pop(key)
    catalog = ModelCatalog.load(write(tmp_path, data))  # echo has no owner/context_window: fine
    assert catalog.models["echo"].owner is None
    assert catalog.models["trial"].approved_by is None
    assert catalog.models["titan"].context_window is None  # embedding: optional


@pytest.mark.parametrize(
    ("region", "expected"),
    [
        (None, "us.anthropic.haiku-v1:0"),  # no region: the default, as before
        ("${Token[AWS.Region.9]}", "us.anthropic.haiku-v1:0"),  # region-agnostic stack
        ("us-west-2", "us.anthropic.haiku-v1:0"),  # prefix us-
        ("eu-west-1", "eu.anthropic.haiku-v1:0"),  # prefix eu-
        ("eu-central-1", "anthropic.haiku-v1:0"),  # the longer prefix wins
        ("eu-west-3", "global.anthropic.haiku-v1:0"),  # an exact region beats every prefix
        ("ap-southeast-2", "us.anthropic.haiku-v1:0"),  # not covered: falls back to inference_profile
    ],
)
def test_invoke_id_for_region(tmp_path: Path, region: str | None, expected: str) -> None:
    haiku = ModelCatalog.load(write(tmp_path, documented())).models["haiku"]
    assert haiku.invoke_id_for(region) == expected


def test_gateway_config_uses_the_regions_ids(tmp_path: Path) -> None:
    catalog = ModelCatalog.load(write(tmp_path, documented()))
    with pytest.warns(CatalogWarning):  # nova and titan have no EU ID (the next test checks the message)
        eu = catalog.gateway_config(region="eu-west-1", model_timeout_s=9.0)
    assert eu.model_timeout_s == 9.0
    assert [t.model_id for t in eu.routes["chat"].targets] == [
        "eu.anthropic.haiku-v1:0",
        "amazon.nova-lite-v1:0",
    ]
    assert all(t.region is None for t in eu.routes["chat"].targets)
    assert catalog.gateway_config().routes["chat"].targets[0].model_id == "us.anthropic.haiku-v1:0"


def test_gateway_config_warns_when_a_routed_model_has_no_id_for_the_region(tmp_path: Path) -> None:
    catalog = ModelCatalog.load(write(tmp_path, documented()))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        catalog.gateway_config(region="eu-west-1")
    messages = sorted(str(w.message) for w in caught if w.category is CatalogWarning)
    assert len(messages) == 2
    assert (
        "model 'nova' lists no ID for region eu-west-1; the gateway will call 'amazon.nova-lite-v1:0'"
        in messages[0]
    )
    assert "model 'titan' lists no ID for region eu-west-1" in messages[1]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        catalog.gateway_config(region="us-east-1")  # every routed model covers it
        catalog.gateway_config(region="${Token[AWS.Region.9]}")


def test_bedrock_invoke_arns_follow_the_region(tmp_path: Path) -> None:
    catalog = ModelCatalog.load(write(tmp_path, documented()))

    def haiku_models(*regions: str) -> list[str]:
        return [f"arn:aws:bedrock:{r}::foundation-model/anthropic.haiku-v1:0" for r in regions]

    others = [
        "arn:aws:bedrock:us-east-1::foundation-model/amazon.nova-lite-v1:0",
        "arn:aws:bedrock:us-east-1::foundation-model/amazon.titan-embed-text-v2:0",
    ]
    eu = catalog.bedrock_invoke_arns("aws", "eu-west-1", "111122223333")
    assert eu == sorted(
        [
            "arn:aws:bedrock:eu-west-1:111122223333:inference-profile/eu.anthropic.haiku-v1:0",
            # nova and titan have no ID for eu-west-1: the gateway calls them there, so IAM allows it
            "arn:aws:bedrock:eu-west-1::foundation-model/amazon.nova-lite-v1:0",
            "arn:aws:bedrock:eu-west-1::foundation-model/amazon.titan-embed-text-v2:0",
            # the eu. profile routes inside the EU only: the model is allowed in the EU regions listed
            *haiku_models("eu-central-1", "eu-west-1"),
            *others,
        ]
    )
    # A regional ID that is the plain model: no profile, the model in the stack's region.
    central = catalog.bedrock_invoke_arns("aws", "eu-central-1", "111122223333")
    assert not any("inference-profile/" in a and "haiku" in a for a in central)
    # A token region (region-agnostic stack): every model's default ID, as before.
    token = catalog.bedrock_invoke_arns("aws", "${Token[AWS.Region.9]}", "1")
    assert token == sorted(
        [
            "arn:aws:bedrock:${Token[AWS.Region.9]}:1:inference-profile/us.anthropic.haiku-v1:0",
            *haiku_models("us-east-1", "us-west-2"),
            *others,
        ]
    )


def test_packaged_catalog_documents_every_bedrock_model() -> None:
    catalog = ModelCatalog.load()
    for m in catalog.models.values():
        assert m.owner == "platform-ai@example.com"
        if m.provider != "bedrock":
            continue
        assert m.provider_name and m.compliance_notes and m.known_limitations, m.name
        assert m.status != "approved" or (m.approved_by and m.approved_on), m.name
    assert catalog.models["claude-haiku-4-5"].context_window == 200000
    assert catalog.models["claude-sonnet-4-5"].context_window == 200000
    assert catalog.models["nova-lite"].context_window == 300000
    assert catalog.models["titan-embed-v2"].context_window == 8192
    with pytest.warns(CatalogWarning, match="titan-embed-v2"):  # no EU ID for it yet: the warning says so
        eu = catalog.gateway_config(region="eu-central-1").routes
    assert eu["chat-fast"].targets[0].model_id.startswith("eu.anthropic.claude-haiku-4-5")


@pytest.mark.parametrize(
    ("mutate", "expected"),
    [
        (lambda d: model(d, "nova").pop("owner"), r"model 'nova': field 'owner': is required"),
        (lambda d: model(d, "nova").update(owner=""), r"model 'nova': field 'owner': must be a non-empty"),
        (
            lambda d: model(d, "nova").pop("context_window"),
            r"model 'nova': field 'context_window': is required",
        ),
        (
            lambda d: model(d, "nova").update(context_window=0),
            r"field 'context_window': must be a whole number > 0",
        ),
        (lambda d: model(d, "nova").update(context_window=True), r"field 'context_window': must be a whole"),
        (lambda d: model(d, "nova").update(context_window="8k"), r"field 'context_window': must be a whole"),
        (lambda d: model(d, "titan").update(context_window=1.5), r"model 'titan': field 'context_window'"),
        (
            lambda d: model(d, "nova").update(max_output_tokens=-1),
            r"field 'max_output_tokens': must be a whole",
        ),
        (
            lambda d: model(d, "nova").update(max_output_tokens=300001),
            r"model 'nova': field 'max_output_tokens': exceeds the context window",
        ),
        (lambda d: model(d, "nova").update(provider_name=7), r"model 'nova': field 'provider_name': must be"),
        (lambda d: model(d, "nova").pop("approved_by"), r"model 'nova': field 'approved_by': is required"),
        (lambda d: model(d, "nova").pop("approved_on"), r"model 'nova': field 'approved_on': is required"),
        (
            lambda d: model(d, "nova").update(approved_on="yesterday"),
            r"model 'nova': field 'approved_on': must be a date YYYY-MM-DD",
        ),
        (
            lambda d: model(d, "nova").update(evaluated_on="run-1"),
            r"model 'nova': field 'evaluated_on': must be a list",
        ),
        (
            lambda d: model(d, "nova").update(known_limitations=["a", "a"]),
            r"model 'nova': field 'known_limitations': lists an item twice",
        ),
        (
            lambda d: model(d, "nova").update(regional_ids={}),
            r"model 'nova': field 'regional_ids': must be a non-empty",
        ),
        (
            lambda d: model(d, "nova").update(regional_ids=["eu-"]),
            r"field 'regional_ids': must be a non-empty mapping",
        ),
        (
            lambda d: model(d, "nova").update(regional_ids={"europe": "eu.amazon.nova-lite-v1:0"}),
            r"model 'nova': field 'regional_ids.europe': keys must be a region",
        ),
        (
            lambda d: model(d, "nova").update(regional_ids={"eu-": ""}),
            r"model 'nova': field 'regional_ids.eu-': must be a non-empty string",
        ),
        (
            lambda d: model(d, "nova").update(regional_ids={"eu-": "eu.amazon.nova-pro-v1:0"}),
            r"field 'regional_ids.eu-': must be the model_id 'amazon.nova-lite-v1:0' or an inference profile",
        ),
        (
            lambda d: model(d, "nova").update(regional_ids={"eu-": "x.y.amazon.nova-lite-v1:0"}),
            r"field 'regional_ids.eu-': must be the model_id",
        ),
        (
            lambda d: model(d, "echo").update(regional_ids={"eu-": "echo"}),
            r"model 'echo': field 'regional_ids': only applies to bedrock",
        ),
        (
            lambda d: model(d, "nova").update(compliance_notes="EU"),
            r"model 'nova': field 'compliance_notes': must be a",
        ),
        (
            lambda d: model(d, "nova").update(compliance_notes={"data_residency": "US", "residency": "x"}),
            r"model 'nova': field 'compliance_notes': unknown key",
        ),
        (
            lambda d: model(d, "nova").update(compliance_notes={"notes": "x"}),
            r"model 'nova': field 'data_residency': is required",
        ),
        (
            lambda d: model(d, "nova").update(
                compliance_notes={"data_residency": "US", "provider_terms": "http://example.com/terms"}
            ),
            r"model 'nova': field 'compliance_notes.provider_terms': must be an https:// URL",
        ),
    ],
)
def test_each_documentation_rule_names_file_entry_and_field(
    tmp_path: Path, mutate: Any, expected: str
) -> None:
    data = base()
    mutate(data)
    message = load_error(tmp_path, data)
    assert re.search(expected, message), message


# ------------------------------------------------------------------------------------------ garbage

_scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.floats(allow_nan=True),
    st.text(max_size=8),
    st.sampled_from(["bedrock", "echo", "chat", "embedding", "approved", "deprecated", "2026-01-01"]),
    st.dates(),
)
_keys = st.sampled_from(
    [
        *("name", "provider", "modality", "model_id", "inference_profile", "regions", "prices", "status"),
        *("deprecated_on", "alias", "targets", "input", "output", "models", "routes", "x"),
        *("owner", "context_window", "max_output_tokens", "regional_ids", "approved_by", "approved_on"),
        *("evaluated_on", "compliance_notes", "known_limitations", "data_residency", "provider_terms", "eu-"),
    ]
)
_values = st.recursive(
    _scalars,
    lambda children: st.one_of(
        st.lists(children, max_size=4), st.dictionaries(st.one_of(_keys, st.integers()), children, max_size=6)
    ),
    max_leaves=25,
)
_garbage = st.one_of(
    _values,
    st.fixed_dictionaries({"models": _values, "routes": _values}),
    st.fixed_dictionaries(
        {
            "models": st.lists(st.dictionaries(_keys, _values, max_size=9), max_size=3),
            "routes": st.lists(st.dictionaries(_keys, _values, max_size=3), max_size=3),
        }
    ),
)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_garbage)
def test_garbage_raises_catalog_error_only(data: Any) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", CatalogWarning)
        try:
            ModelCatalog.from_dict(data, source="garbage.yaml")
        except CatalogError as exc:
            assert str(exc).startswith("garbage.yaml: ")


# ------------------------------------------------------------------------------------- route timeouts


def test_route_timeouts_default_and_reach_the_runtime_config(tmp_path: Path) -> None:
    from aif_gateway.config import RouteTimeouts

    data = base()
    data["routes"][0]["timeouts"] = {"first_token_s": 20, "idle_s": 10, "total_minutes": 12}
    config = ModelCatalog.load(write(tmp_path, data)).gateway_config()
    assert config.routes["chat"].timeouts == RouteTimeouts(20, 10, 12)
    assert config.routes["embed"].timeouts == RouteTimeouts()
    assert GatewayConfig.from_dict(json.loads(config.to_json())).routes["chat"].timeouts == RouteTimeouts(
        20, 10, 12
    )


@pytest.mark.parametrize(
    ("timeouts", "why"),
    [
        ("fast", "must be a mapping of first_token_s, idle_s, total_minutes"),
        ({"first_token": 5}, "unknown keys ['first_token']"),
        ({"idle_s": -1}, "'idle_s' must be a number > 0, got -1"),
        ({"total_minutes": True}, "'total_minutes' must be a number > 0, got True"),
        ({"first_token_s": 120, "total_minutes": 1}, "'first_token_s' (120) must not exceed 'total_minutes'"),
    ],
)
def test_route_timeouts_are_validated(tmp_path: Path, timeouts: Any, why: str) -> None:
    data = base()
    data["routes"][0]["timeouts"] = timeouts
    message = load_error(tmp_path, data)
    assert "route 'chat': field 'timeouts': " in message and why in message


def test_profile_prices_price_each_geography_and_the_gateway_uses_its_region_s(tmp_path: Path) -> None:
    data = base()
    haiku = model(data, "haiku")
    haiku["regional_ids"] = {"us-": "us.anthropic.haiku-v1:0", "eu-": "eu.anthropic.haiku-v1:0"}
    haiku["regions"] = ["us-east-1", "eu-west-1", "ap-northeast-1"]
    haiku["profile_prices"] = {"eu": {"input": 1.1, "output": 5.5}}
    catalog = ModelCatalog.load(write(tmp_path, data))
    m = catalog.models["haiku"]
    assert m.prices_for("eu.anthropic.haiku-v1:0") == Prices(1.1, 5.5)
    assert m.prices_for("us.anthropic.haiku-v1:0") == m.prices  # no entry: the base prices
    assert m.prices_for("anthropic.haiku-v1:0") == m.prices  # in-region model ID
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", CatalogWarning)  # the other models list no eu- IDs
        eu = catalog.gateway_config(region="eu-west-1").routes["chat"].targets[0]
        us = catalog.gateway_config(region="us-east-1").routes["chat"].targets[0]
    assert (eu.model_id, eu.prices) == ("eu.anthropic.haiku-v1:0", Prices(1.1, 5.5))
    assert us.prices == Prices(1.0, 5.0, 0.1, 1.25)
    assert m.to_dict()["profile_prices"]["eu"]["input"] == 1.1


def test_packaged_catalog_prices_the_geographic_claude_profiles_above_global() -> None:
    haiku = ModelCatalog.load().models["claude-haiku-4-5"]
    assert haiku.prices_for("us.anthropic.claude-haiku-4-5-20251001-v1:0").input == pytest.approx(1.10)
    assert haiku.prices_for("global.anthropic.claude-haiku-4-5-20251001-v1:0") == haiku.prices


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ({"mars": {"input": 1}}, "field 'profile_prices.mars': is not an inference-profile geography"),
        ({"eu": {"inptu": 1}}, "field 'profile_prices.eu': unknown key(s) ['inptu']"),
        ({"eu": {"input": -1}}, "field 'profile_prices.eu.input': must be a non-negative number"),
        ([1], "field 'profile_prices': must be a mapping of geography -> prices"),
    ],
)
def test_bad_profile_prices_name_the_field(tmp_path: Path, value: Any, message: str) -> None:
    data = base()
    model(data, "haiku")["profile_prices"] = value
    assert message in load_error(tmp_path, data)


def test_model_aliases_reach_gateway_config_and_are_validated() -> None:
    data = base()
    data["model_aliases"] = {"claude-sonnet-4-5": "chat", "gpt-5": "chat"}
    config = ModelCatalog.from_dict(data).gateway_config()
    assert config.model_aliases == {"claude-sonnet-4-5": "chat", "gpt-5": "chat"}
    assert GatewayConfig.from_dict(json.loads(config.to_json())).model_aliases == config.model_aliases
    for aliases, why in [
        ({"gpt-5": "nope"}, "must name a route"),
        ({"gpt-5": "embed"}, "is not a chat route"),
        ({"chat": "chat"}, "may not shadow a route"),
        (["gpt-5"], "must be a mapping"),
    ]:
        data["model_aliases"] = aliases
        with pytest.raises(CatalogError, match=why):
            ModelCatalog.from_dict(data)


def test_packaged_model_aliases_name_chat_routes() -> None:
    catalog = ModelCatalog.load()
    assert catalog.model_aliases["claude-sonnet-4-5"] == "chat-smart"
    assert all(catalog.routes[r].modality == "chat" for r in catalog.model_aliases.values())
