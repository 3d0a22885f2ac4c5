"""Custom-resource handler that publishes the page into the site bucket at deploy time.

The page's files ship in this function's own code asset (``web/``); ``config.json`` (the Cognito domain,
app client and redirect URL, known only once the stack deploys) comes from the resource's properties.
Each deploy writes every file (the asset hash changes when a file does, which updates the resource);
deleting the resource leaves the retained bucket as it is. Standard library and boto3 only.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

from .web_policy import WEB_FILES

log = logging.getLogger(__name__)

BUCKET = "Bucket"
CONFIG = "Config"
WEB_DIR = Path(__file__).resolve().parent / "web"


def publish(s3: Any, bucket: str, config: dict[str, Any], web_dir: Path = WEB_DIR) -> list[str]:
    """Put the page's files and ``config.json`` into ``bucket``; returns the keys written."""
    written = []
    for name, content_type in WEB_FILES.items():
        s3.put_object(
            Bucket=bucket,
            Key=name,
            Body=(web_dir / name).read_bytes(),
            ContentType=content_type,
            CacheControl="no-cache",
        )
        written.append(name)
    s3.put_object(
        Bucket=bucket,
        Key="config.json",
        Body=json.dumps(config).encode("utf-8"),
        ContentType="application/json",
        CacheControl="no-store",
    )
    written.append("config.json")
    return written


def on_event(event: dict[str, Any], context: Any = None) -> dict[str, Any]:
    props = event.get("ResourceProperties") or {}
    bucket = str(props[BUCKET])
    physical_id = f"assistant-site-{bucket}"
    if event.get("RequestType") == "Delete":
        return {"PhysicalResourceId": event.get("PhysicalResourceId") or physical_id}
    import boto3

    config = json.loads(str(props[CONFIG]))
    keys = publish(boto3.client("s3"), bucket, config)
    log.info("published %s to %s", ", ".join(keys), bucket)
    return {"PhysicalResourceId": physical_id, "Data": {"Files": len(keys)}}
