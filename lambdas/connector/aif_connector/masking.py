"""Masking detected PII per a dataset's policy: redact, keyed hash, or reversible tokenization.

* ``redact``: each span becomes its kind in brackets, ``[EMAIL]``. Irreversible, no joins.
* ``hash``: ``[EMAIL:<20 hex>]``, the first 80 bits of HMAC-SHA256 under a secret key over the kind
  and the normalised value (e-mail lower-cased, separators dropped from numbers). The same person
  gets the same pseudonym in every file and every dataset masked with that key, so joins and
  counts still work; without the key nobody can test a guess (a plain hash of a phone number is
  reversed by trying all numbers). The key comes from a KMS data key decrypted at start
  (:func:`hmac_key_from_kms`) or a Secrets Manager secret (:func:`hmac_key_from_secret`).
* ``tokenize``: ``[EMAIL:tok:<32 hex>]``; the token is an HMAC of the exact value and a DynamoDB
  vault maps it to the value encrypted under a KMS key (:class:`Tokenizer`), so authorised callers
  (those allowed ``kms:Decrypt`` on that key, with the token as encryption context) get it back with
  :meth:`Tokenizer.detokenize`.

Standard library and boto3 only (the connector Lambda's runtime has no ``cryptography``).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal

from .pii import CREDIT_CARD, EMAIL, IBAN, Finding, resolve

Mode = Literal["redact", "hash", "tokenize"]
MODES: tuple[str, ...] = ("redact", "hash", "tokenize")
MIN_KEY_BYTES = 16
HASH_HEX_CHARS = 20  # 80 bits: no collision expected below ~10^12 distinct values per kind
TOKEN_HEX_CHARS = 32  # 128 bits: tokens are vault keys, a collision would return the wrong value
KMS_MAX_PLAINTEXT = 4096
# A token as it appears in masked text: [KIND:tok:hex]
TOKEN_RE = re.compile(rf"\[([A-Z][A-Z0-9_]*):tok:([0-9a-f]{{{TOKEN_HEX_CHARS}}})\]")
_BARE_TOKEN_RE = re.compile(rf"([A-Z][A-Z0-9_]*):tok:([0-9a-f]{{{TOKEN_HEX_CHARS}}})")


@dataclass(frozen=True)
class MaskingPolicy:
    """How a dataset's PII is masked; ``hmac_key`` for ``hash``, ``tokenizer`` for ``tokenize``."""

    mode: Mode
    hmac_key: bytes | None = None
    tokenizer: Tokenizer | None = None

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise ValueError(f"masking mode must be one of {MODES}, not {self.mode!r}")
        if self.mode == "hash" and (self.hmac_key is None or len(self.hmac_key) < MIN_KEY_BYTES):
            raise ValueError(f"mode 'hash' needs an hmac_key of at least {MIN_KEY_BYTES} bytes")
        if self.mode == "tokenize" and self.tokenizer is None:
            raise ValueError("mode 'tokenize' needs a tokenizer")

    def describe(self) -> dict[str, Any]:
        """What the lineage record says about the policy (never the key itself)."""
        out: dict[str, Any] = {"mode": self.mode}
        if self.mode == "hash" and self.hmac_key is not None:
            out["algorithm"] = f"HMAC-SHA256, first {HASH_HEX_CHARS * 4} bits"
            # Identifies which key was used (so two datasets can be checked for joinability) without
            # revealing anything usable about it.
            out["key_fingerprint"] = hmac.new(self.hmac_key, b"aif:key-fingerprint", "sha256").hexdigest()[
                :16
            ]
        if self.mode == "tokenize" and self.tokenizer is not None:
            out["vault_table"] = self.tokenizer.table_name
            out["kms_key_id"] = self.tokenizer.kms_key_id
        return out


_SEPARATORS = re.compile(r"[\s.-]")
_NOT_DIGITS = re.compile(r"[^0-9]")


def normalize(kind: str, value: str) -> str:
    """The form a value is hashed in, so that formatting differences do not break joins."""
    if kind == EMAIL:
        return value.strip().casefold()
    if kind in (CREDIT_CARD, IBAN) or kind.endswith(("_SSN", "_NINO", "_TAX_ID", "_NIR", "_DNI")):
        return _SEPARATORS.sub("", value).upper()
    if kind == "PHONE":
        digits = _NOT_DIGITS.sub("", value)
        return "+" + digits if value.lstrip().startswith("+") else digits
    return " ".join(value.split())


def pseudonym(kind: str, value: str, key: bytes) -> str:
    """``[KIND:<hex>]``: the keyed hash of a value (deterministic under one key)."""
    message = f"{kind}\x00{normalize(kind, value)}".encode()
    digest = hmac.digest(key, message, "sha256").hex()[:HASH_HEX_CHARS]  # one-shot, in C
    return f"[{kind}:{digest}]"


def mask(value: str, findings: Iterable[Finding], policy: MaskingPolicy) -> str:
    """``value`` with every finding replaced per ``policy``; overlapping findings are resolved first.

    Raises ``ValueError`` when a finding does not describe ``value`` (its text differs from the span),
    which would otherwise leave PII in place.
    """
    spans = resolve(findings)
    for f in spans:
        if not (0 <= f.start < f.end <= len(value)) or value[f.start : f.end] != f.text:
            raise ValueError(f"finding {f.kind} at {f.start}:{f.end} does not match the value")
    if not spans:
        return value
    parts: list[str] = []
    pos = 0
    for f in spans:
        parts.append(value[pos : f.start])
        parts.append(_replacement(f, policy))
        pos = f.end
    parts.append(value[pos:])
    return "".join(parts)


def _replacement(f: Finding, policy: MaskingPolicy) -> str:
    if policy.mode == "redact":
        return f"[{f.kind}]"
    if policy.mode == "hash":
        assert policy.hmac_key is not None  # checked by MaskingPolicy
        return pseudonym(f.kind, f.text, policy.hmac_key)
    assert policy.tokenizer is not None
    return f"[{policy.tokenizer.tokenize(f.kind, f.text)}]"


# ------------------------------------------------------------------------------------------ keys


def hmac_key_from_kms(kms: Any, ciphertext: bytes, encryption_context: dict[str, str] | None = None) -> bytes:
    """The plaintext of a KMS data key (``GenerateDataKey``'s ``CiphertextBlob``), decrypted once at start."""
    kwargs: dict[str, Any] = {"CiphertextBlob": ciphertext}
    if encryption_context:
        kwargs["EncryptionContext"] = encryption_context
    key: bytes = kms.decrypt(**kwargs)["Plaintext"]
    return _checked_key(key)


def hmac_key_from_secret(secretsmanager: Any, secret_id: str) -> bytes:
    """The key held in a Secrets Manager secret: ``SecretBinary``, or ``SecretString`` as base64."""
    response = secretsmanager.get_secret_value(SecretId=secret_id)
    if "SecretBinary" in response:
        return _checked_key(bytes(response["SecretBinary"]))
    try:
        key = base64.b64decode(response["SecretString"], validate=True)
    except ValueError as exc:
        raise ValueError(f"secret {secret_id}: SecretString must be the key in base64") from exc
    return _checked_key(key)


def _checked_key(key: bytes) -> bytes:
    if len(key) < MIN_KEY_BYTES:
        raise ValueError(f"an HMAC key needs at least {MIN_KEY_BYTES} bytes, got {len(key)}")
    return key


# ------------------------------------------------------------------------------------- token vault


class TokenNotFoundError(KeyError):
    """The token is not in the vault (never issued, or issued under another vault)."""


class Tokenizer:
    """Reversible tokens backed by a DynamoDB vault and KMS.

    Vault table: partition key ``token`` (S); items ``{token, kind, ciphertext (B), created_at}``.
    The ciphertext is KMS ``Encrypt`` of the value with encryption context ``{"aif:token": token}``,
    so a ciphertext copied onto another item does not decrypt, and CloudTrail records which token
    each ``Decrypt`` was for. Writes are conditional (``attribute_not_exists``): a token is written
    once, whichever run saw the value first.

    Tokens and values are cached in memory; create one ``Tokenizer`` per invocation (or call
    :meth:`clear_cache`) so plaintext does not outlive the invocation that needed it.
    """

    def __init__(
        self,
        *,
        table_name: str,
        kms_key_id: str,
        hmac_key: bytes,
        dynamodb: Any,
        kms: Any,
        max_cache: int = 100_000,
    ) -> None:
        self.table_name = table_name
        self.kms_key_id = kms_key_id
        self._key = _checked_key(hmac_key)
        self._dynamodb = dynamodb
        self._kms = kms
        self._max_cache = max_cache
        self._tokens: dict[tuple[str, str], str] = {}
        self._values: dict[str, str] = {}
        self.kms_calls = 0
        self.vault_writes = 0

    def token_for(self, kind: str, value: str) -> str:
        """The token of ``value`` (pure: no AWS call, nothing stored)."""
        digest = hmac.new(self._key, f"{kind}\x00{value}".encode(), hashlib.sha256).hexdigest()
        return f"{kind}:tok:{digest[:TOKEN_HEX_CHARS]}"

    def tokenize(self, kind: str, value: str) -> str:
        """The token of ``value``, stored in the vault (encrypted) the first time it is seen."""
        cached = self._tokens.get((kind, value))
        if cached is not None:
            return cached
        plaintext = value.encode()
        if len(plaintext) > KMS_MAX_PLAINTEXT:
            raise ValueError(f"a {kind} value over {KMS_MAX_PLAINTEXT} bytes cannot be tokenized")
        token = self.token_for(kind, value)
        encrypted = self._kms.encrypt(
            KeyId=self.kms_key_id, Plaintext=plaintext, EncryptionContext={"aif:token": token}
        )["CiphertextBlob"]
        self.kms_calls += 1
        try:
            self._dynamodb.put_item(
                TableName=self.table_name,
                Item={
                    "token": {"S": token},
                    "kind": {"S": kind},
                    "ciphertext": {"B": encrypted},
                    "created_at": {"S": datetime.now(UTC).isoformat(timespec="seconds")},
                },
                ConditionExpression="attribute_not_exists(#t)",
                ExpressionAttributeNames={"#t": "token"},
            )
            self.vault_writes += 1
        except self._dynamodb.exceptions.ConditionalCheckFailedException:
            pass  # already in the vault: the same value was tokenized before
        self._remember(kind, value, token)
        return token

    def detokenize(self, token: str) -> str:
        """The original value of ``token`` (``KIND:tok:hex``, with or without brackets).

        Needs ``dynamodb:GetItem`` on the vault and ``kms:Decrypt`` on its key: that IAM permission
        is what makes a caller authorised.
        """
        m = _BARE_TOKEN_RE.fullmatch(token.strip().removeprefix("[").removesuffix("]"))
        if not m:
            raise ValueError(f"not a token: {token!r}")
        token = m.group(0)
        cached = self._values.get(token)
        if cached is not None:
            return cached
        item = self._dynamodb.get_item(
            TableName=self.table_name, Key={"token": {"S": token}}, ConsistentRead=True
        ).get("Item")
        if item is None:
            raise TokenNotFoundError(token)
        value: str = self._kms.decrypt(
            CiphertextBlob=item["ciphertext"]["B"], EncryptionContext={"aif:token": token}
        )["Plaintext"].decode()
        self.kms_calls += 1
        self._remember(m.group(1), value, token)
        return value

    def detokenize_text(self, text: str) -> str:
        """``text`` with every ``[KIND:tok:hex]`` token replaced by its original value."""
        return TOKEN_RE.sub(lambda m: self.detokenize(m.group(0)), text)

    def clear_cache(self) -> None:
        """Forget cached tokens and plaintext values (call at the end of each invocation)."""
        self._tokens.clear()
        self._values.clear()

    def _remember(self, kind: str, value: str, token: str) -> None:
        if len(self._tokens) >= self._max_cache:
            self.clear_cache()
        self._tokens[(kind, value)] = token
        self._values[token] = value
