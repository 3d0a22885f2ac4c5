"""Masking: redact, keyed hash, tokenization with a DynamoDB + KMS vault (moto), key loading."""

from __future__ import annotations

import base64
import hashlib
import hmac
from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from aif_connector.masking import (
    TOKEN_RE,
    MaskingPolicy,
    Tokenizer,
    TokenNotFoundError,
    hmac_key_from_kms,
    hmac_key_from_secret,
    mask,
    pseudonym,
)
from aif_connector.pii import Finding, detect
from hypothesis import given, settings
from hypothesis import strategies as st
from moto import mock_aws

KEY = b"k" * 32
TEXT = "Name: Ann Lee, mail ann@example.com, call +44 20 7946 0958, card 4111 1111 1111 1111."


def test_redact_replaces_each_span_with_its_kind() -> None:
    out = mask(TEXT, detect(TEXT), MaskingPolicy("redact"))
    assert out == "Name: [PERSON_NAME], mail [EMAIL], call [PHONE], card [CREDIT_CARD]."


def test_hash_is_keyed_deterministic_and_normalised() -> None:
    policy = MaskingPolicy("hash", hmac_key=KEY)
    a = mask("mail ANN@Example.com", detect("mail ANN@Example.com"), policy)
    b = mask("mail ann@example.com", detect("mail ann@example.com"), policy)
    assert a == b and a.startswith("mail [EMAIL:") and len(a) == len("mail [EMAIL:]") + 20
    # Same card written two ways: same pseudonym, so joins across files still work.
    assert pseudonym("CREDIT_CARD", "4111 1111 1111 1111", KEY) == pseudonym(
        "CREDIT_CARD", "4111-1111-1111-1111", KEY
    )
    assert pseudonym("EMAIL", "ann@example.com", KEY) != pseudonym("EMAIL", "ann@example.com", b"j" * 32)
    assert pseudonym("EMAIL", "x", KEY) != pseudonym("PERSON_NAME", "x", KEY)  # kind is part of the message


def test_pseudonym_is_the_documented_hmac() -> None:
    """Pinned: data masked earlier must still join with data masked now (HMAC-SHA256 of kind NUL value)."""
    for kind, value, normalised in [
        ("EMAIL", " Ann@Example.COM", "ann@example.com"),
        ("CREDIT_CARD", "4111-1111 1111.1111", "4111111111111111"),
        ("PHONE", "+44 (20) 7946-0958", "+442079460958"),
        ("PERSON_NAME", "Ann  Lee", "Ann Lee"),
    ]:
        expected = hmac.new(KEY, f"{kind}\x00{normalised}".encode(), hashlib.sha256).hexdigest()[:20]
        assert pseudonym(kind, value, KEY) == f"[{kind}:{expected}]"


def test_mask_rejects_findings_that_do_not_describe_the_value() -> None:
    with pytest.raises(ValueError, match="does not match"):
        mask("hello", [Finding("EMAIL", 0, 5, "world", 0.9)], MaskingPolicy("redact"))
    with pytest.raises(ValueError, match="does not match"):
        mask("hello", [Finding("EMAIL", 3, 9, "lo", 0.9)], MaskingPolicy("redact"))


def test_overlapping_findings_are_resolved_before_masking() -> None:
    findings = [Finding("PHONE", 0, 11, "12345678901", 0.7), Finding("DE_TAX_ID", 0, 11, "12345678901", 0.9)]
    assert mask("12345678901!", findings, MaskingPolicy("redact")) == "[DE_TAX_ID]!"


def test_policy_validation_and_description() -> None:
    with pytest.raises(ValueError, match="mode"):
        MaskingPolicy("encrypt")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="hmac_key"):
        MaskingPolicy("hash")
    with pytest.raises(ValueError, match="hmac_key"):
        MaskingPolicy("hash", hmac_key=b"short")
    with pytest.raises(ValueError, match="tokenizer"):
        MaskingPolicy("tokenize")
    described = MaskingPolicy("hash", hmac_key=KEY).describe()
    assert described["mode"] == "hash" and len(described["key_fingerprint"]) == 16
    assert KEY.hex() not in str(described) and "kkkk" not in str(described)


@settings(max_examples=200, deadline=None)
@given(
    st.lists(
        st.one_of(
            st.sampled_from(
                ["a@example.com", "+44 20 7946 0958", "4111 1111 1111 1111", "GB82WEST12345698765432",
                 "10.0.0.1", "219-09-9998", "AB123456C", "Dear Ann Lee", "12345678Z", "signed, Bo Li"]
            ),
            st.text(max_size=10),
        ),
        max_size=10,
    ).map(" ".join),
    st.sampled_from(["redact", "hash"]),
)  # fmt: skip
def test_masked_output_contains_no_detected_value(text: str, mode: str) -> None:
    findings = detect(text)
    out = mask(text, findings, MaskingPolicy(mode, hmac_key=KEY))  # type: ignore[arg-type]
    # Structured values: also every other occurrence of the value (detect reports them all). Names
    # are only masked where the context or the same word-bounded name shows them ("Ann Leea" is not
    # "Ann Lee").
    for f in findings:
        if f.kind != "PERSON_NAME":
            assert f.text not in out, (f, out)
    if mode == "redact":
        assert out.count("[PERSON_NAME]") == sum(f.kind == "PERSON_NAME" for f in findings)


# ------------------------------------------------------------------------------------- token vault


@pytest.fixture
def aws(monkeypatch: pytest.MonkeyPatch) -> Iterator[dict[str, Any]]:
    for name, value in {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": "eu-west-1",
    }.items():
        monkeypatch.setenv(name, value)
    with mock_aws():
        kms = boto3.client("kms", region_name="eu-west-1")
        dynamodb = boto3.client("dynamodb", region_name="eu-west-1")
        key_id = kms.create_key(Description="pii vault")["KeyMetadata"]["KeyId"]
        dynamodb.create_table(
            TableName="vault",
            KeySchema=[{"AttributeName": "token", "KeyType": "HASH"}],
            AttributeDefinitions=[{"AttributeName": "token", "AttributeType": "S"}],
            BillingMode="PAY_PER_REQUEST",
        )
        yield {"kms": kms, "dynamodb": dynamodb, "key_id": key_id}


def _tokenizer(aws: dict[str, Any]) -> Tokenizer:
    return Tokenizer(
        table_name="vault", kms_key_id=aws["key_id"], hmac_key=KEY, dynamodb=aws["dynamodb"], kms=aws["kms"]
    )


def test_tokenize_round_trip_through_the_vault(aws: dict[str, Any]) -> None:
    writer = _tokenizer(aws)
    masked = mask(TEXT, detect(TEXT), MaskingPolicy("tokenize", tokenizer=writer))
    assert "ann@example.com" not in masked and len(TOKEN_RE.findall(masked)) == 4
    # The vault holds ciphertext only.
    items = aws["dynamodb"].scan(TableName="vault")["Items"]
    assert len(items) == 4 and all(b"ann@example.com" not in i["ciphertext"]["B"] for i in items)
    # A different process (fresh caches) with Decrypt rights gets the exact original text back.
    reader = _tokenizer(aws)
    assert reader.detokenize_text(masked) == TEXT
    assert reader.kms_calls == 4


def test_tokens_are_stable_and_cached_per_invocation(aws: dict[str, Any]) -> None:
    tok = _tokenizer(aws)
    first = tok.tokenize("EMAIL", "ann@example.com")
    assert tok.tokenize("EMAIL", "ann@example.com") == first and tok.kms_calls == 1
    tok.clear_cache()
    assert tok.tokenize("EMAIL", "ann@example.com") == first  # conditional put: already in the vault
    assert tok.vault_writes == 1 and tok.kms_calls == 2
    assert tok.tokenize("EMAIL", "bob@example.com") != first
    assert tok.detokenize(f"[{first}]") == "ann@example.com"


def test_detokenize_unknown_or_malformed_token(aws: dict[str, Any]) -> None:
    tok = _tokenizer(aws)
    with pytest.raises(TokenNotFoundError):
        tok.detokenize(tok.token_for("EMAIL", "never@example.com"))
    with pytest.raises(ValueError, match="not a token"):
        tok.detokenize("EMAIL:abc")


def test_ciphertext_moved_to_another_token_does_not_decrypt(aws: dict[str, Any]) -> None:
    tok = _tokenizer(aws)
    a = tok.tokenize("EMAIL", "ann@example.com")
    b = tok.tokenize("EMAIL", "bob@example.com")
    ddb = aws["dynamodb"]
    item_a = ddb.get_item(TableName="vault", Key={"token": {"S": a}})["Item"]
    ddb.update_item(
        TableName="vault",
        Key={"token": {"S": b}},
        UpdateExpression="SET ciphertext = :c",
        ExpressionAttributeValues={":c": item_a["ciphertext"]},
    )
    tok.clear_cache()
    with pytest.raises(aws["kms"].exceptions.InvalidCiphertextException):
        tok.detokenize(b)


def test_hmac_key_from_kms_data_key(aws: dict[str, Any]) -> None:
    kms = aws["kms"]
    data_key = kms.generate_data_key(KeyId=aws["key_id"], KeySpec="AES_256", EncryptionContext={"p": "pii"})
    key = hmac_key_from_kms(kms, data_key["CiphertextBlob"], {"p": "pii"})
    assert key == data_key["Plaintext"] and len(key) == 32


def test_hmac_key_from_secrets_manager(aws: dict[str, Any]) -> None:
    sm = boto3.client("secretsmanager", region_name="eu-west-1")
    sm.create_secret(Name="b64", SecretString=base64.b64encode(KEY).decode())
    sm.create_secret(Name="bin", SecretBinary=KEY)
    sm.create_secret(Name="short", SecretString=base64.b64encode(b"tiny").decode())
    sm.create_secret(Name="text", SecretString="not base64!")
    assert hmac_key_from_secret(sm, "b64") == KEY == hmac_key_from_secret(sm, "bin")
    with pytest.raises(ValueError, match="at least"):
        hmac_key_from_secret(sm, "short")
    with pytest.raises(ValueError, match="base64"):
        hmac_key_from_secret(sm, "text")
