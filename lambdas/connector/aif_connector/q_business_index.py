"""Custom-resource handler: the factory's document attribute fields on an existing Amazon Q Business index.

Q Business sets a document attribute only for a field the index already has, so the ``aif_*`` attributes
the ``QBusinessConnector``'s data sources set need the three fields on the index. A created index gets them
from CloudFormation; an existing application's index belongs to someone else, so this handler adds what is
missing and nothing more:

* Create / Update: ``GetIndex``; a wanted field that is absent is added, one that exists with the same
  type is left exactly as it is (its search setting is the index owner's), one that exists with another
  type fails the deployment naming the field and both types (a field's type cannot be changed). When a
  field is missing, ``UpdateIndex`` gets the index's whole current list plus the missing fields — never
  a shorter list, so no existing field is dropped — and the handler waits until the index is ``ACTIVE``
  again. An index that is busy (``CREATING``/``UPDATING``) is waited for first: ``UpdateIndex`` refuses a
  busy index. Running it again changes nothing (idempotent).
* Delete: nothing. The index is not the factory's, and removing a field would strip the attribute from
  documents other data sources may index.

Resource properties (strings, as CloudFormation passes them): ``ApplicationId``, ``IndexId`` and
``Fields``, a JSON list of ``{"name", "type", "search"}`` (the qbusiness ``DocumentAttributeConfiguration``
shape).
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import Callable, Mapping
from typing import Any

logger = logging.getLogger(__name__)
logger.setLevel(logging.INFO)

RESOURCE_TYPE = "Custom::AiFactoryQBusinessIndexFields"
HANDLER = "aif_connector.q_business_index.on_event"
APPLICATION_ID = "ApplicationId"
INDEX_ID = "IndexId"
FIELDS = "Fields"
MAX_FIELDS = 500  # UpdateIndex's documentAttributeConfigurations holds at most 500 entries
WAIT_S = 720.0  # the longest one event waits for the index to be ACTIVE (the handler times out at 840 s)
POLL_S = 10.0


class IndexFieldError(Exception):
    """The index cannot take the fields (a type conflict, too many fields, a failed index); CloudFormation
    shows the message."""


class IndexFields:
    """Carries out custom-resource events against a boto3 ``qbusiness`` client."""

    def __init__(
        self,
        qbusiness: Any,
        *,
        wait_s: float = WAIT_S,
        poll_s: float = POLL_S,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.qbusiness = qbusiness
        self.wait_s = wait_s
        self.poll_s = poll_s
        self.sleep = sleep
        self.clock = clock

    def handle(self, event: Mapping[str, Any]) -> dict[str, Any]:
        """The response the CDK provider framework expects: ``PhysicalResourceId`` and ``Data``."""
        request = event.get("RequestType")
        props = event.get("ResourceProperties") or {}
        application_id, index_id = str(props.get(APPLICATION_ID, "")), str(props.get(INDEX_ID, ""))
        physical_id = f"{application_id}/{index_id}/document-attributes"
        if request == "Delete":
            logger.info("Delete: the fields stay on index %s (it is not ours)", index_id)
            return {"PhysicalResourceId": event.get("PhysicalResourceId") or physical_id}
        if request not in ("Create", "Update"):
            raise ValueError(f"Unknown custom-resource request type {request!r}")
        if not application_id or not index_id:
            raise ValueError(f"Resource properties {APPLICATION_ID} and {INDEX_ID} are required")
        added = self.ensure(application_id, index_id, _wanted(props))
        return {"PhysicalResourceId": physical_id, "Data": {"Added": ",".join(added)}}

    def ensure(self, application_id: str, index_id: str, wanted: list[dict[str, str]]) -> list[str]:
        """Add the ``wanted`` fields the index lacks; returns the names added (``[]``: nothing to do)."""
        deadline = self.clock() + self.wait_s  # one budget for the waits before and after the update
        index = self._active(application_id, index_id, deadline)
        existing = list(index.get("documentAttributeConfigurations") or [])
        by_name = {field.get("name"): field for field in existing}
        missing = []
        for field in wanted:
            have = by_name.get(field["name"])
            if have is None:
                missing.append(field)
            elif have.get("type") != field["type"]:
                raise IndexFieldError(
                    f"Index {index_id} of Amazon Q Business application {application_id} already has the "
                    f"field {field['name']!r} as {have.get('type')}, not {field['type']}; a field's type "
                    "cannot be changed. Rename or remove that field, or use another index."
                )
        if not missing:
            logger.info("Index %s already has every field: nothing to change", index_id)
            return []
        merged = existing + missing
        if len(merged) > MAX_FIELDS:
            raise IndexFieldError(
                f"Index {index_id} has {len(existing)} fields; adding {len(missing)} exceeds the "
                f"{MAX_FIELDS} an index can hold."
            )
        # The whole list: whatever UpdateIndex does with fields left out, none is ever left out.
        self.qbusiness.update_index(
            applicationId=application_id, indexId=index_id, documentAttributeConfigurations=merged
        )
        names = [field["name"] for field in missing]
        logger.info("Added %s to index %s (%d fields kept)", ", ".join(names), index_id, len(existing))
        self._active(application_id, index_id, deadline)
        return names

    def _active(self, application_id: str, index_id: str, deadline: float) -> dict[str, Any]:
        """``GetIndex`` once the index is ``ACTIVE``; fails on ``FAILED``/``DELETING`` or at ``deadline``."""
        while True:
            index: dict[str, Any] = self.qbusiness.get_index(applicationId=application_id, indexId=index_id)
            status = index.get("status")
            if status == "ACTIVE":
                return index
            if status in ("FAILED", "DELETING"):
                error = (index.get("error") or {}).get("errorMessage", "")
                raise IndexFieldError(f"Index {index_id} is {status}{': ' + error if error else ''}")
            if self.clock() >= deadline:
                raise IndexFieldError(
                    f"Index {index_id} was still {status} after {self.wait_s:g} s; deploy again once it "
                    "is ACTIVE"
                )
            self.sleep(self.poll_s)


def _wanted(props: Mapping[str, Any]) -> list[dict[str, str]]:
    raw = props.get(FIELDS)
    fields = json.loads(raw) if isinstance(raw, str) else raw
    if not isinstance(fields, list) or not fields:
        raise ValueError(f"Resource property {FIELDS} must be a non-empty JSON list")
    wanted = []
    for field in fields:
        if not isinstance(field, Mapping) or not {"name", "type", "search"} <= set(field):
            raise ValueError(f"Resource property {FIELDS}: {field!r} needs name, type and search")
        wanted.append(
            {"name": str(field["name"]), "type": str(field["type"]), "search": str(field["search"])}
        )
    return wanted


def on_event(event: Mapping[str, Any], context: Any = None) -> dict[str, Any]:
    """Lambda entry point (the CDK provider framework's ``onEvent`` handler)."""
    import boto3

    region = os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION")
    logger.info("%s request for %s", event.get("RequestType"), event.get("LogicalResourceId"))
    return IndexFields(boto3.client("qbusiness", region_name=region)).handle(event)
