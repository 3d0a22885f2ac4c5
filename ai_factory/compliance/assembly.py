"""Reading a CDK cloud assembly (``cdk.out``): stacks, resources, construct metadata and references.

Only the files CDK writes are read (``manifest.json``, ``*.template.json``, the per-stack metadata
files and asset folders); no AWS call and no CDK import. References between resources are followed
through ``Ref``, ``Fn::GetAtt`` and ``Fn::ImportValue`` (cross-stack exports).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

STACK_ARTIFACT = "aws:cloudformation:stack"
NESTED_ASSEMBLY = "cdk:cloud-assembly"
ACK_METADATA = "aws:cdk:acknowledged-rules"
ACK_PREFIX = "Annotation::"


class AssemblyError(Exception):
    """The folder is not a readable cloud assembly (the message names the file and the reason)."""


@dataclass(frozen=True)
class Resource:
    """One CloudFormation resource of a synthesized stack."""

    stack: str
    logical_id: str
    type: str
    properties: dict[str, Any]
    path: str  # construct path without the leading "/" ("" when CDK recorded none)
    metadata: dict[str, Any] = field(default_factory=dict)

    @property
    def tags(self) -> dict[str, str]:
        """``Tags`` as a dict (list-of-Key/Value and map forms)."""
        raw = self.properties.get("Tags")
        if isinstance(raw, list):
            return {
                str(t["Key"]): str(t["Value"])
                for t in raw
                if isinstance(t, dict) and "Key" in t and isinstance(t.get("Value"), str)
            }
        if isinstance(raw, dict):
            return {str(k): str(v) for k, v in raw.items() if isinstance(v, str)}
        return {}

    @property
    def label(self) -> str:
        """A human-readable name: the construct path, else ``stack/logicalId``."""
        return self.path or f"{self.stack}/{self.logical_id}"


@dataclass
class Stack:
    """A synthesized stack: its template, resources and construct metadata (path -> entries)."""

    name: str
    template: dict[str, Any]
    resources: dict[str, Resource]
    metadata: dict[str, list[dict[str, Any]]]
    tags: dict[str, str]


class CloudAssembly:
    """A cloud assembly on disk. ``CloudAssembly.load(path)``."""

    def __init__(self, directory: Path, stacks: list[Stack], nested: list[str]) -> None:
        self.directory = directory
        self.stacks = stacks
        self.nested = nested  # nested assemblies (pipeline stages) present but not read
        self._by_name = {s.name: s for s in stacks}
        self._exports: dict[str, tuple[str, Any]] = {}
        for stack in stacks:
            for output in (stack.template.get("Outputs") or {}).values():
                export = (output.get("Export") or {}).get("Name")
                if isinstance(export, str):
                    self._exports[export] = (stack.name, output.get("Value"))

    @classmethod
    def load(cls, directory: str | Path) -> CloudAssembly:
        """Read ``directory``/manifest.json and every stack it lists."""
        root = Path(directory)
        manifest = _read_json(root / "manifest.json")
        artifacts = manifest.get("artifacts")
        if not isinstance(artifacts, dict):
            raise AssemblyError(f"{root / 'manifest.json'}: no 'artifacts' (is this a cdk.out folder?)")
        stacks: list[Stack] = []
        nested: list[str] = []
        for artifact_id, artifact in sorted(artifacts.items()):
            kind = artifact.get("type")
            if kind == NESTED_ASSEMBLY:
                nested.append(artifact_id)
            elif kind == STACK_ARTIFACT:
                stacks.append(_load_stack(root, artifact_id, artifact))
        return cls(root, stacks, nested)

    # ------------------------------------------------------------------------------------- lookups
    def stack(self, name: str) -> Stack:
        return self._by_name[name]

    def resources(self, *types: str) -> Iterator[Resource]:
        """Every resource (of ``types`` when given), stack by stack in template order."""
        for stack in self.stacks:
            for resource in stack.resources.values():
                if not types or resource.type in types:
                    yield resource

    def metadata_entries(self, entry_type: str) -> Iterator[tuple[str, str, Any]]:
        """``(stack, construct path, data)`` of every metadata entry of ``entry_type``."""
        for stack in self.stacks:
            for path, entries in stack.metadata.items():
                for entry in entries:
                    if entry.get("type") == entry_type:
                        yield stack.name, path, entry.get("data")

    def target(self, stack: str, value: Any) -> Resource | None:
        """The resource a ``Ref`` / ``Fn::GetAtt`` / ``Fn::ImportValue`` points at, else None."""
        if not isinstance(value, dict) or len(value) != 1:
            return None
        ((fn, arg),) = value.items()
        resources = self._by_name[stack].resources if stack in self._by_name else {}
        if fn == "Ref" and isinstance(arg, str):
            return resources.get(arg)
        if fn == "Fn::GetAtt":
            name = (
                arg[0]
                if isinstance(arg, list) and arg
                else (arg.split(".")[0] if isinstance(arg, str) else None)
            )
            return resources.get(name) if isinstance(name, str) else None
        if fn == "Fn::ImportValue" and isinstance(arg, str) and arg in self._exports:
            export_stack, export_value = self._exports[arg]
            return self.target(export_stack, export_value)
        return None

    def references(self, stack: str, value: Any) -> Iterator[Resource]:
        """Every resource referenced anywhere inside ``value`` (deep)."""
        found = self.target(stack, value)
        if found is not None:
            yield found
            return
        if isinstance(value, dict):
            for item in value.values():
                yield from self.references(stack, item)
        elif isinstance(value, list):
            for item in value:
                yield from self.references(stack, item)

    def acknowledgements(self, resource: Resource) -> dict[str, str]:
        """Rule findings acknowledged (cdk-nag 3 / CDK validations) on the resource or an ancestor.

        CDK records ``Validations.of(c).acknowledge(...)`` as ``aws:cdk:acknowledged-rules`` metadata
        on construct ``c``; it covers ``c`` and everything below it. Keys are rule IDs such as
        ``AwsSolutions-IAM5[Resource::*]``.
        """
        stack = self._by_name.get(resource.stack)
        if stack is None or not resource.path:
            return {}
        found: dict[str, str] = {}
        for path, entries in stack.metadata.items():
            if resource.path == path or resource.path.startswith(path + "/"):
                for entry in entries:
                    if entry.get("type") == ACK_METADATA and isinstance(entry.get("data"), dict):
                        for rule, reason in entry["data"].items():
                            found[str(rule).removeprefix(ACK_PREFIX)] = str(reason)
        return found

    def asset_dir(self, resource: Resource) -> Path | None:
        """The staged asset folder of a Lambda function, if any.

        The CDK CLI records it as ``aws:asset:path`` resource metadata; an in-process ``app.synth()``
        does not, so the folder is also found from the code's S3 key (``<asset hash>.zip``).
        """
        names = [resource.metadata.get("aws:asset:path")]
        s3_key = (resource.properties.get("Code") or {}).get("S3Key")
        if isinstance(s3_key, str) and s3_key.endswith(".zip"):
            names.append("asset." + s3_key.removesuffix(".zip"))
        for name in names:
            if isinstance(name, str) and (self.directory / name).is_dir():
                return self.directory / name
        return None


def render(value: Any) -> str:
    """A CloudFormation value as readable text: ``${Logical.Attr}`` for references, joins expanded."""
    if isinstance(value, str):
        return value
    if isinstance(value, bool | int | float):
        return json.dumps(value)
    if isinstance(value, list):
        return ", ".join(render(v) for v in value)
    if isinstance(value, dict) and len(value) == 1:
        ((fn, arg),) = value.items()
        if fn == "Ref":
            return "${" + str(arg) + "}"
        if fn == "Fn::GetAtt":
            parts = arg if isinstance(arg, list) else str(arg).split(".")
            return "${" + ".".join(str(p) for p in parts) + "}"
        if fn == "Fn::Join" and isinstance(arg, list) and len(arg) == 2 and isinstance(arg[1], list):
            return str(arg[0]).join(render(v) for v in arg[1])
        if fn == "Fn::Sub":
            return render(arg[0]) if isinstance(arg, list) else str(arg)
        if fn == "Fn::ImportValue":
            return "${Import:" + render(arg) + "}"
        if fn == "Fn::Select" and isinstance(arg, list) and len(arg) == 2:
            return f"${{Select:{render(arg[0])}:{render(arg[1])}}}"
    return json.dumps(value, sort_keys=True)


def _read_json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise AssemblyError(f"{path}: not found (run `make synth` or `cdk synth` first)") from exc
    except (OSError, json.JSONDecodeError) as exc:
        raise AssemblyError(f"{path}: cannot read: {exc}") from exc
    if not isinstance(data, dict):
        raise AssemblyError(f"{path}: expected a JSON object")
    return data


def _load_stack(root: Path, artifact_id: str, artifact: dict[str, Any]) -> Stack:
    props = artifact.get("properties") or {}
    template_file = props.get("templateFile")
    if not isinstance(template_file, str):
        raise AssemblyError(f"{root / 'manifest.json'}: stack {artifact_id} names no templateFile")
    template = _read_json(root / template_file)
    name = str(props.get("stackName") or artifact_id)
    # Metadata is inline in the manifest or, since CDK 2.1xx, in an additional file per stack.
    metadata: dict[str, list[dict[str, Any]]] = {}
    sources = [artifact.get("metadata") or {}]
    extra = artifact.get("additionalMetadataFile")
    if isinstance(extra, str):
        sources.append(_read_json(root / extra))
    for source in sources:
        for path, entries in source.items():
            if isinstance(entries, list):
                metadata.setdefault(path.lstrip("/"), []).extend(e for e in entries if isinstance(e, dict))
    # Construct paths: the template's aws:cdk:path (CLI synth) or the logicalId metadata entries
    # (always written, also by an in-process app.synth()).
    paths = {
        str(entry.get("data")): path
        for path, entries in metadata.items()
        for entry in entries
        if entry.get("type") == "aws:cdk:logicalId"
    }
    resources = {
        logical_id: Resource(
            stack=name,
            logical_id=logical_id,
            type=str(body.get("Type", "")),
            properties=body.get("Properties") or {},
            path=str((body.get("Metadata") or {}).get("aws:cdk:path") or paths.get(logical_id, "")),
            metadata=body.get("Metadata") or {},
        )
        for logical_id, body in (template.get("Resources") or {}).items()
        if isinstance(body, dict)
    }
    tags = {str(k): str(v) for k, v in (props.get("tags") or {}).items()}
    return Stack(name=name, template=template, resources=resources, metadata=metadata, tags=tags)
