"""Suite files: load and validate one YAML eval suite into a ``model.Suite``.

A suite lives next to the feature that owns it (``features/<feature>/evals/<name>.yaml``)::

    suite: summarize-ticket
    version: 2                                         # optional: bump when the cases change meaning
    description: Summaries keep the facts and leak no card numbers.
    prompt: {name: summarize-ticket, alias: staging}   # or {name, version: 3}; or model + messages
    gate: {min_pass_rate: 0.9, repeats: 3, min_case_pass_fraction: 0.66}
    defaults:
      assert:
        - {type: not-contains, value: "4111 1111", hard_fail: true}
    request: {temperature: 0}                          # options sent with every case (optional)
    cases:
      - id: refund-request
        vars: {ticket: "I want a refund for order 123", max_sentences: 2}
        request: {response_format: {type: json_object}}  # the case's own, over the suite's
        offline_answer: {json: {intent: refund}}         # what --target local answers (optional)
        assert:
          - {type: icontains, value: refund}

A feature runs a suite that ships with the factory (``ai_factory/data/safety/``) through its own prompt
by including it: the shipped cases' ``input`` goes into ``input_var``, the prompt's other variables take
``vars``, and the suite's ``defaults`` apply to them too (its own ``cases`` are optional)::

    suite: summarize-ticket-injection
    prompt: {name: summarize-ticket, alias: staging}
    include: {suite: safety/prompt-injection, input_var: ticket, vars: {max_sentences: 2}}

Everything is checked before any model is called: every problem raises ``SuiteError`` whose message is
``"<file>:<line>: <reason>"``, the line taken from the YAML node that holds the mistake. When the
prompt is a local file (``../prompts/<name>.yaml`` next to the suite's folder), each case's vars must
match its variables exactly (the gateway rejects unexpected ones); with inline ``messages`` every
variable of the messages must be given (extra vars are allowed). A case's own ``messages`` are
appended as they are, not rendered.
"""

from __future__ import annotations

import hashlib
import math
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import yaml

from aif_gateway.prompt_template import BRACED_PATTERN, VARIABLE_PATTERN, extract_variables

from .model import (
    ASSERTION_TYPES,
    LABELLED_ASSERTIONS,
    RETRIEVAL_ASSERTIONS,
    Assertion,
    Case,
    Gate,
    PromptRef,
    Suite,
)

__all__ = ["SuiteError", "load_suite", "local_prompt_path"]

SUITE_FIELDS = (
    "suite", "version", "description", "prompt", "model", "messages", "request", "gate", "defaults",
    "include", "cases", "retrieval",
)  # fmt: skip
RETRIEVAL_FIELDS = ("knowledge_base", "top_k", "grounding_check", "documents", "dataset")
INCLUDE_FIELDS = ("suite", "input_var", "vars")
CASE_FIELDS = ("id", "description", "vars", "request", "offline_answer", "assert", "messages", "relevant")
REQUEST_FIELDS = ("response_format", "tools", "tool_choice", "temperature", "top_p", "max_tokens", "stop")
ASSERTION_FIELDS = ("type", "value", "threshold", "hard_fail", "method", "model")
GATE_FIELDS = ("min_pass_rate", "repeats", "min_case_pass_fraction")
PROMPT_FIELDS = ("name", "version", "alias")
ROLES = ("system", "user", "assistant")
SIMILARITY_METHODS = ("token", "embedding")
CASE_ID_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$")

# What each assertion type needs. ``value`` kinds: "text" (a string; numbers are accepted and turned
# into text), "regex", "schema" (a mapping), None (no value allowed). ``threshold`` kinds: "unit"
# (0..1), "positive" (> 0), "non-negative" (>= 0), None (no threshold allowed).
_VALUE_KIND: dict[str, str | None] = {
    "equals": "text",
    "contains": "text",
    "icontains": "text",
    "not-contains": "text",
    "regex": "regex",
    "is-json": None,
    "json-schema": "schema",
    "similarity": "text",
    "llm-judge": "text",
    "latency_ms": None,
    "cost_usd": None,
    "context-recall": None,
    "context-precision": None,
    "citation-correctness": None,
    "groundedness": None,
}
_THRESHOLD_KIND: dict[str, str | None] = {
    "similarity": "unit",
    "llm-judge": "unit",
    "latency_ms": "positive",
    "cost_usd": "non-negative",
    "context-recall": "unit",
    "context-precision": "unit",
    "citation-correctness": "unit",
    "groundedness": "unit",
}


class SuiteError(ValueError):
    """A suite file is unreadable or invalid. ``str()`` is ``"<file>:<line>: <reason>"``."""

    def __init__(self, path: str | os.PathLike[str], line: int, reason: str) -> None:
        self.path = str(path)
        self.line = line
        self.reason = reason
        super().__init__(f"{self.path}:{line}: {reason}")


# --- YAML with line numbers ------------------------------------------------------------------------


@dataclass(frozen=True)
class _Variables:
    """The variables a case's vars are checked against, and where they come from."""

    names: tuple[str, ...]
    source: str
    allow_extra: bool


class _Map(dict[Any, Any]):
    """A YAML mapping that remembers where it and each of its keys were written (1-based lines)."""

    line: int = 0
    key_lines: dict[Any, int]


class _Seq(list[Any]):
    """A YAML sequence that remembers where it and each of its items were written (1-based lines)."""

    line: int = 0
    item_lines: list[int]


class _LineLoader(yaml.SafeLoader):
    """SafeLoader whose mappings and sequences carry line numbers, and which rejects duplicate keys."""


def _construct_map(loader: _LineLoader, node: yaml.MappingNode) -> _Map:
    loader.flatten_mapping(node)
    result = _Map()
    result.line = node.start_mark.line + 1
    result.key_lines = {}
    for key_node, value_node in node.value:
        key = loader.construct_object(key_node, deep=True)
        try:
            duplicate = key in result
        except TypeError:
            raise yaml.constructor.ConstructorError(
                None, None, "a mapping key must be a plain value", key_node.start_mark
            ) from None
        if duplicate:
            raise yaml.constructor.ConstructorError(None, None, f"duplicate key {key!r}", key_node.start_mark)
        result[key] = loader.construct_object(value_node, deep=True)
        result.key_lines[key] = key_node.start_mark.line + 1
    return result


def _construct_seq(loader: _LineLoader, node: yaml.SequenceNode) -> _Seq:
    result = _Seq(loader.construct_object(item, deep=True) for item in node.value)
    result.line = node.start_mark.line + 1
    result.item_lines = [item.start_mark.line + 1 for item in node.value]
    return result


_LineLoader.add_constructor("tag:yaml.org,2002:map", _construct_map)
_LineLoader.add_constructor("tag:yaml.org,2002:seq", _construct_seq)


def _plain(value: Any) -> Any:
    """Plain dicts and lists (no line bookkeeping) for the values a Suite keeps."""
    if isinstance(value, Mapping):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    return value


# --- The loader --------------------------------------------------------------------------------------


def local_prompt_path(suite_path: str | os.PathLike[str], prompt_name: str) -> Path:
    """Where a suite's prompt file lives by convention: ``<feature>/prompts/<name>.yaml``.

    ``<feature>`` is the parent of the suite's folder (``<feature>/evals/<suite>.yaml``). The file may
    not exist (a prompt registered from elsewhere): callers check.
    """
    return Path(suite_path).resolve().parent.parent / "prompts" / f"{prompt_name}.yaml"


class _Loader:
    """Validation of one suite file; every method raises ``SuiteError`` with the offending line."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def fail(self, line: int, reason: str) -> SuiteError:
        return SuiteError(self.path, line, reason)

    @staticmethod
    def key_line(mapping: _Map, key: str) -> int:
        return mapping.key_lines.get(key, mapping.line)

    def mapping(self, value: Any, line: int, what: str, allowed: tuple[str, ...]) -> _Map:
        if not isinstance(value, _Map):
            raise self.fail(line, f"{what} must be a mapping")
        for key in value:
            if key not in allowed:
                raise self.fail(
                    self.key_line(value, key),
                    f"{what}: unknown field {key!r} (allowed: {', '.join(allowed)})",
                )
        return value

    def text(self, mapping: _Map, key: str, what: str, *, required: bool = True) -> str | None:
        value = mapping.get(key)
        if value is None and not required:
            return None
        if not isinstance(value, str) or not value.strip():
            reason = "is required" if value is None else "must be a non-empty string"
            raise self.fail(self.key_line(mapping, key), f"{what}: {key!r} {reason}")
        return value.strip()

    # -- top level

    def load(self) -> Suite:
        try:
            raw_bytes = self.path.read_bytes()
        except OSError as exc:
            raise SuiteError(self.path, 0, f"cannot read it: {exc.strerror or exc}") from exc
        try:
            text = raw_bytes.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise SuiteError(self.path, 1, f"not UTF-8 text: {exc.reason}") from exc
        try:
            data = yaml.load(text, Loader=_LineLoader)
        except yaml.MarkedYAMLError as exc:
            mark = exc.problem_mark or exc.context_mark
            line = mark.line + 1 if mark else 1
            raise self.fail(line, f"not valid YAML: {exc.problem or exc.context or exc}") from exc
        except yaml.YAMLError as exc:
            raise self.fail(1, f"not valid YAML: {exc}") from exc
        if data is None:
            raise self.fail(1, "the file is empty (expected: suite, prompt or messages, cases)")
        top = self.mapping(data, 1, "suite file", SUITE_FIELDS)

        name = self.text(top, "suite", "suite file")
        assert name is not None
        description = self.text(top, "description", "suite file", required=False) or ""
        version = top.get("version")
        if version is not None and (isinstance(version, bool) or not isinstance(version, int) or version < 1):
            raise self.fail(
                self.key_line(top, "version"),
                f"suite file: 'version' must be an integer >= 1, got {version!r}",
            )
        prompt = self.prompt(top)
        model = self.text(top, "model", "suite file", required=False)
        messages = self.messages(top.get("messages"), self.key_line(top, "messages"), "messages")
        if prompt is not None and messages:
            raise self.fail(
                self.key_line(top, "messages"), "give 'prompt' (a registered prompt) or 'messages', not both"
            )
        if prompt is None and not messages:
            raise self.fail(top.line, "give 'prompt' (a registered prompt) or 'model' + 'messages'")
        if messages and model is None:
            raise self.fail(self.key_line(top, "messages"), "inline 'messages' need a 'model' (an alias)")
        gate = self.gate(top)
        defaults = self.defaults(top)
        request = self.request(top.get("request"), self.key_line(top, "request"), "request")
        variables = self.expected_variables(prompt, messages)
        included = self.include(top, prompt, variables, defaults)
        cases = included + (
            self.cases(top, defaults, variables, request) if "cases" in top or not included else ()
        )
        retrieval, documents = self.retrieval(top)
        self.check_retrieval_cases(cases, retrieval is not None)
        seen = [c.id for c in cases]
        if len(set(seen)) != len(seen):
            twice = sorted({i for i in seen if seen.count(i) > 1})
            raise self.fail(
                self.key_line(top, "cases"), f"case id(s) {twice} are both included and written here"
            )
        return Suite(
            name=name,
            path=self.path,
            content_hash="sha256:" + hashlib.sha256(raw_bytes).hexdigest(),
            cases=cases,
            gate=gate,
            prompt=prompt,
            model=model,
            messages=messages,
            description=description,
            version=version,
            retrieval=retrieval,
            documents=documents,
        )

    def retrieval(self, top: _Map) -> tuple[dict[str, Any] | None, Path | None]:
        """``retrieval: {knowledge_base, top_k, grounding_check, documents}``: the chat ``retrieval`` field
        every case sends, and (``documents``, relative to the suite file) the documents that
        ``--target local`` serves under that knowledge base name."""
        if "retrieval" not in top:
            return None, None
        line = self.key_line(top, "retrieval")
        raw = self.mapping(top.get("retrieval"), line, "retrieval", RETRIEVAL_FIELDS)
        name = self.text(raw, "knowledge_base", "retrieval")
        if not re.fullmatch(r"[a-z0-9][a-z0-9-]{0,62}", str(name)):
            raise self.fail(line, f"retrieval: 'knowledge_base' {name!r} is not a knowledge base name")
        out: dict[str, Any] = {"knowledge_base": name}
        top_k = raw.get("top_k")
        if top_k is not None:
            if isinstance(top_k, bool) or not isinstance(top_k, int) or not 1 <= top_k <= 20:
                raise self.fail(
                    self.key_line(raw, "top_k"), "retrieval: 'top_k' must be a whole number 1..20"
                )
            out["top_k"] = top_k
        check = raw.get("grounding_check")
        if check is not None:
            if not isinstance(check, bool):
                raise self.fail(
                    self.key_line(raw, "grounding_check"),
                    "retrieval: 'grounding_check' must be true or false",
                )
            out["grounding_check"] = check
        dataset = self.text(raw, "dataset", "retrieval", required=False)
        if dataset is not None and not re.fullmatch(r"[a-z0-9_]+\.[a-z0-9_]+", dataset):
            raise self.fail(
                self.key_line(raw, "dataset"), f"retrieval: 'dataset' {dataset!r} is not domain.name"
            )
        documents = self.text(raw, "documents", "retrieval", required=False)
        folder = None
        if documents is not None:
            folder = (self.path.parent / documents).resolve()
            if not folder.is_dir():
                raise self.fail(
                    self.key_line(raw, "documents"), f"retrieval: 'documents' {documents!r} is not a folder"
                )
        return out, folder

    def check_retrieval_cases(self, cases: tuple[Case, ...], has_retrieval: bool) -> None:
        """Retrieval assertions need the suite's ``retrieval``; labelled ones need the case's ``relevant``."""
        for case in cases:
            for a in case.assertions:
                if a.type in RETRIEVAL_ASSERTIONS and not has_retrieval:
                    raise self.fail(a.line, f"case {case.id!r} ({a.type}): the suite has no 'retrieval'")
                if a.type in LABELLED_ASSERTIONS and not case.relevant:
                    raise self.fail(
                        a.line, f"case {case.id!r} ({a.type}): needs the case's 'relevant' documents"
                    )

    def include(
        self,
        top: _Map,
        prompt: PromptRef | None,
        variables: _Variables | None,
        defaults: tuple[Assertion, ...],
    ) -> tuple[Case, ...]:
        """The cases of a shipped suite (``include: {suite: safety/..., input_var, vars}``), bound to this
        suite's prompt: the attack goes into ``input_var``, the other variables take ``vars``."""
        raw = top.get("include")
        if raw is None:
            return ()
        line = self.key_line(top, "include")
        spec = self.mapping(raw, line, "include", INCLUDE_FIELDS)
        ref = self.text(spec, "suite", "include")
        input_var = self.text(spec, "input_var", "include")
        assert ref is not None and input_var is not None
        if prompt is None:
            raise self.fail(
                line, "include: needs the suite's 'prompt' (the feature prompt the cases run through)"
            )
        from .safety import INPUT_VAR, UnknownSuite, shipped_suite_path

        try:
            shipped = load_suite(shipped_suite_path(ref))
        except UnknownSuite as exc:
            raise self.fail(self.key_line(spec, "suite"), f"include: {exc}") from None
        fixed = self.case_vars(spec, "include", None)
        if variables is not None:
            self.case_vars_match({**fixed, input_var: ""}, line, "include: input_var + vars", variables)
        return tuple(
            replace(
                case,
                vars={**fixed, input_var: case.vars[INPUT_VAR]},
                assertions=case.assertions + defaults,
                line=line,
            )
            for case in shipped.cases
        )

    def prompt(self, top: _Map) -> PromptRef | None:
        raw = top.get("prompt")
        line = self.key_line(top, "prompt")
        if raw is None:
            return None
        if isinstance(raw, str):
            raw_map = _Map(name=raw)
            raw_map.line, raw_map.key_lines = line, {"name": line}
        else:
            raw_map = self.mapping(raw, line, "prompt", PROMPT_FIELDS)
        name = self.text(raw_map, "name", "prompt")
        assert name is not None
        version, alias = raw_map.get("version"), raw_map.get("alias")
        if version is not None and alias is not None:
            raise self.fail(line, "prompt: give 'version' or 'alias', not both")
        if version is not None and (isinstance(version, bool) or not isinstance(version, int) or version < 1):
            raise self.fail(
                self.key_line(raw_map, "version"),
                f"prompt: 'version' must be an integer >= 1, got {version!r}",
            )
        if alias is not None:
            alias = self.text(raw_map, "alias", "prompt")
        return PromptRef(name=name, version=version, alias=alias)

    def messages(self, raw: Any, line: int, what: str) -> tuple[dict[str, Any], ...]:
        if raw is None:
            return ()
        if not isinstance(raw, _Seq) or not raw:
            raise self.fail(line, f"{what} must be a non-empty list of {{role, content}}")
        out = []
        for index, (item, item_line) in enumerate(zip(raw, raw.item_lines, strict=True)):
            where = f"{what}[{index}]"
            message = self.mapping(item, item_line, where, ("role", "content"))
            role = message.get("role")
            if role not in ROLES:
                raise self.fail(
                    self.key_line(message, "role"),
                    f"{where}: 'role' must be one of {', '.join(ROLES)}, got {role!r}",
                )
            content = self.text(message, "content", where)
            assert content is not None
            for match in BRACED_PATTERN.finditer(content):
                if not VARIABLE_PATTERN.fullmatch(match.group(0)):
                    raise self.fail(
                        self.key_line(message, "content"),
                        f"{where}: {match.group(0)!r} is not a valid variable (use {{{{ name }}}})",
                    )
            out.append({"role": role, "content": message["content"]})
        return tuple(out)

    def gate(self, top: _Map) -> Gate:
        raw = top.get("gate")
        if raw is None:
            return Gate()
        gate = self.mapping(raw, self.key_line(top, "gate"), "gate", GATE_FIELDS)
        values: dict[str, Any] = {}
        for key in ("min_pass_rate", "min_case_pass_fraction"):
            if key in gate:
                value = gate[key]
                if not _is_number(value) or not 0 <= value <= 1:
                    raise self.fail(
                        self.key_line(gate, key), f"gate: {key!r} must be a number from 0 to 1, got {value!r}"
                    )
                values[key] = float(value)
        if "repeats" in gate:
            repeats = gate["repeats"]
            if isinstance(repeats, bool) or not isinstance(repeats, int) or repeats < 1:
                raise self.fail(
                    self.key_line(gate, "repeats"),
                    f"gate: 'repeats' must be an integer >= 1, got {repeats!r}",
                )
            values["repeats"] = repeats
        return Gate(**values)

    def defaults(self, top: _Map) -> tuple[Assertion, ...]:
        raw = top.get("defaults")
        if raw is None:
            return ()
        defaults = self.mapping(raw, self.key_line(top, "defaults"), "defaults", ("assert",))
        return self.assertions(defaults.get("assert"), self.key_line(defaults, "assert"), "defaults")

    def expected_variables(
        self, prompt: PromptRef | None, messages: tuple[dict[str, Any], ...]
    ) -> _Variables | None:
        """The variables each case must give, when they can be known before any call."""
        if messages:
            # Rendered here, so vars the template does not use are harmless (assertions may read them).
            return _Variables(extract_variables(messages), "the suite's messages", allow_extra=True)
        if prompt is None:
            return None
        prompt_file = local_prompt_path(self.path, prompt.name)
        if not prompt_file.is_file():
            return None  # registered elsewhere: the gateway checks the vars at call time
        # Imported here: the prompt loader is only needed when a local prompt file exists.
        from ai_factory.prompts.spec import PromptFileError, load_prompt_file

        try:
            spec = load_prompt_file(prompt_file)
        except PromptFileError as exc:
            raise self.fail(1, f"prompt {prompt.name!r}: its local file is invalid: {exc}") from exc
        if spec.name != prompt.name:
            return None  # a different prompt that happens to share the file name: do not guess
        # The gateway rejects unexpected variables of a registered prompt, so they must match exactly.
        return _Variables(spec.variables, f"prompt file {prompt_file.name}", allow_extra=False)

    def cases(
        self,
        top: _Map,
        defaults: tuple[Assertion, ...],
        variables: _Variables | None,
        request: dict[str, Any],
    ) -> tuple[Case, ...]:
        raw = top.get("cases")
        line = self.key_line(top, "cases")
        if raw is None:
            raise self.fail(top.line, "'cases' is required (a non-empty list)")
        if not isinstance(raw, _Seq) or not raw:
            raise self.fail(line, "'cases' must be a non-empty list")
        seen: dict[str, int] = {}
        cases = []
        for index, (item, item_line) in enumerate(zip(raw, raw.item_lines, strict=True)):
            case = self.mapping(item, item_line, f"cases[{index}]", CASE_FIELDS)
            case_id = self.text(case, "id", f"cases[{index}]")
            assert case_id is not None
            id_line = self.key_line(case, "id")
            if not CASE_ID_PATTERN.match(case_id):
                raise self.fail(
                    id_line, f"case {case_id!r}: id must be letters, digits, '_', '.', '-' (max 128)"
                )
            if case_id in seen:
                raise self.fail(id_line, f"duplicate case id {case_id!r} (first at line {seen[case_id]})")
            seen[case_id] = id_line
            where = f"case {case_id!r}"
            case_vars = self.case_vars(case, where, variables)
            own = self.assertions(case.get("assert"), self.key_line(case, "assert"), where, optional=True)
            assertions = own + defaults
            if not assertions:
                raise self.fail(case.line, f"{where} has no assertions (add 'assert' or 'defaults.assert')")
            extra = self.messages(case.get("messages"), self.key_line(case, "messages"), f"{where}: messages")
            own_request = self.request(
                case.get("request"), self.key_line(case, "request"), f"{where}: request"
            )
            offline = case.get("offline_answer")
            if offline is not None:
                self.offline_answer(offline, self.key_line(case, "offline_answer"), where)
            cases.append(
                Case(
                    id=case_id,
                    vars=case_vars,
                    assertions=assertions,
                    messages=extra,
                    line=case.line,
                    request={**request, **own_request},
                    offline_answer=_plain(offline),
                    description=self.text(case, "description", where, required=False) or "",
                    relevant=self.relevant(case, where),
                )
            )
        return tuple(cases)

    def relevant(self, case: _Map, where: str) -> tuple[str, ...]:
        raw = case.get("relevant")
        if raw is None:
            return ()
        if not isinstance(raw, list) or not raw or not all(isinstance(r, str) and r for r in raw):
            raise self.fail(
                self.key_line(case, "relevant"),
                f"{where}: 'relevant' must be a non-empty list of document names (parts of source URIs)",
            )
        return tuple(raw)

    def case_vars(self, case: _Map, where: str, variables: _Variables | None) -> dict[str, Any]:
        raw = case.get("vars")
        line = self.key_line(case, "vars")
        if raw is None:
            raw = _Map()
            raw.line, raw.key_lines = line, {}
        if not isinstance(raw, _Map):
            raise self.fail(line, f"{where}: 'vars' must be a mapping of name: value")
        for key, value in raw.items():
            if not isinstance(key, str):
                raise self.fail(self.key_line(raw, key), f"{where}: variable name {key!r} must be a string")
            # The same rule the gateway applies when it renders: strings and numbers only.
            if isinstance(value, bool) or not isinstance(value, str | int | float):
                raise self.fail(
                    self.key_line(raw, key), f"{where}: variable {key!r} must be a string or a number"
                )
        if variables is not None:
            self.case_vars_match(raw, line, where, variables)
        return dict(raw)

    def case_vars_match(self, given: Mapping[str, Any], line: int, where: str, variables: _Variables) -> None:
        missing = sorted(set(variables.names) - set(given))
        extra = [] if variables.allow_extra else sorted(set(given) - set(variables.names))
        if missing or extra:
            parts = ([f"missing: {', '.join(missing)}"] if missing else []) + (
                [f"unexpected: {', '.join(extra)}"] if extra else []
            )
            raise self.fail(
                line,
                f"{where}: vars do not match the variables of {variables.source} ({'; '.join(parts)})",
            )

    # -- request options and offline answers

    def request(self, raw: Any, line: int, what: str) -> dict[str, Any]:
        """Chat-completion options sent with each case; checked here so a typo fails before any call."""
        if raw is None:
            return {}
        options = self.mapping(raw, line, what, REQUEST_FIELDS)
        for key, value in options.items():
            where, at = f"{what}: {key!r}", self.key_line(options, key)
            if key == "response_format":
                self.response_format(value, at, where)
            elif key == "tools" and not (
                isinstance(value, list)
                and value
                and all(isinstance(t, Mapping) and isinstance(t.get("function"), Mapping) for t in value)
            ):
                raise self.fail(
                    at, f"{where} must be a non-empty list of {{type: function, function: {{...}}}}"
                )
            elif key == "tool_choice" and not isinstance(value, str | Mapping):
                raise self.fail(at, f"{where} must be none, auto, required or {{type: function, ...}}")
            elif key in ("temperature", "top_p") and not (_is_number(value) and 0 <= value <= 2):
                raise self.fail(at, f"{where} must be a number from 0 to 2, got {value!r}")
            elif key == "max_tokens" and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
                raise self.fail(at, f"{where} must be an integer >= 1, got {value!r}")
            elif key == "stop" and not (
                isinstance(value, str) or (isinstance(value, list) and all(isinstance(v, str) for v in value))
            ):
                raise self.fail(at, f"{where} must be a string or a list of strings")
        return dict(_plain(options))

    def response_format(self, value: Any, line: int, where: str) -> None:
        kinds = ("text", "json_object", "json_schema")
        if not isinstance(value, Mapping) or value.get("type") not in kinds:
            raise self.fail(line, f"{where} must be {{type: {' | '.join(kinds)}}}")
        if value["type"] != "json_schema":
            return
        spec = value.get("json_schema")
        if not isinstance(spec, Mapping) or not isinstance(spec.get("name"), str):
            raise self.fail(line, f"{where}: json_schema needs a 'name' and a 'schema'")
        schema = spec.get("schema")
        if not isinstance(schema, Mapping):
            raise self.fail(line, f"{where}: json_schema.schema must be a JSON Schema (a mapping)")
        from .deterministic import schema_problems

        problems = schema_problems(_plain(schema))
        if problems:
            raise self.fail(line, f"{where}: invalid JSON Schema: {problems[0]}")

    def offline_answer(self, value: Any, line: int, where: str) -> None:
        from aif_gateway.offline_model import CannedAnswer, ScriptError

        try:
            CannedAnswer.parse(_plain(value), f"{where}: offline_answer")
        except ScriptError as exc:
            raise self.fail(line, str(exc)) from None

    # -- assertions

    def assertions(self, raw: Any, line: int, where: str, *, optional: bool = False) -> tuple[Assertion, ...]:
        if raw is None and optional:
            return ()
        if not isinstance(raw, _Seq) or (not raw and not optional):
            raise self.fail(line, f"{where}: 'assert' must be a non-empty list of assertions")
        return tuple(
            self.assertion(item, item_line, f"{where}: assert[{index}]")
            for index, (item, item_line) in enumerate(zip(raw, raw.item_lines, strict=True))
        )

    def assertion(self, raw: Any, line: int, where: str) -> Assertion:
        item = self.mapping(raw, line, where, ASSERTION_FIELDS)
        kind = item.get("type")
        if kind is None:
            raise self.fail(item.line, f"{where}: 'type' is required (one of {', '.join(ASSERTION_TYPES)})")
        if kind not in ASSERTION_TYPES:
            raise self.fail(
                self.key_line(item, "type"),
                f"{where}: unknown assertion type {kind!r} (known: {', '.join(ASSERTION_TYPES)})",
            )
        where = f"{where} ({kind})"
        value = self.assertion_value(item, kind, where)
        threshold = self.assertion_threshold(item, kind, where)
        hard_fail = item.get("hard_fail", False)
        if not isinstance(hard_fail, bool):
            raise self.fail(self.key_line(item, "hard_fail"), f"{where}: 'hard_fail' must be true or false")
        method = item.get("method")
        if method is not None:
            if kind != "similarity":
                raise self.fail(
                    self.key_line(item, "method"), f"{where}: 'method' only applies to similarity"
                )
            if method not in SIMILARITY_METHODS:
                raise self.fail(
                    self.key_line(item, "method"),
                    f"{where}: 'method' must be one of {', '.join(SIMILARITY_METHODS)}, got {method!r}",
                )
        model = self.text(item, "model", where, required=False)
        if model is not None and not (
            kind in ("llm-judge", "groundedness") or (kind == "similarity" and method == "embedding")
        ):
            raise self.fail(
                self.key_line(item, "model"),
                f"{where}: 'model' only applies to llm-judge, groundedness and embedding similarity",
            )
        return Assertion(
            type=kind,
            value=value,
            threshold=threshold,
            hard_fail=hard_fail,
            method=method,
            model=model,
            line=line,
        )

    def assertion_value(self, item: _Map, kind: str, where: str) -> Any:
        value_kind = _VALUE_KIND[kind]
        line = self.key_line(item, "value")
        value = item.get("value")
        if value_kind is None:
            if "value" in item:
                raise self.fail(line, f"{where}: takes no 'value'")
            return None
        if value is None:
            raise self.fail(line, f"{where}: 'value' is required")
        if value_kind == "schema":
            if not isinstance(value, Mapping):
                raise self.fail(line, f"{where}: 'value' must be a JSON Schema (a mapping)")
            # Imported here to keep the suite loader and the assertion logic in their own modules.
            from .deterministic import schema_problems

            problems = schema_problems(_plain(value))
            if problems:
                raise self.fail(line, f"{where}: invalid JSON Schema: {problems[0]}")
            return _plain(value)
        if _is_number(value):
            value = str(value)  # `value: 42` means the text "42"
        if not isinstance(value, str) or value == "":
            raise self.fail(line, f"{where}: 'value' must be a non-empty string")
        if value_kind == "regex":
            try:
                re.compile(value)
            except re.error as exc:
                raise self.fail(line, f"{where}: bad regex {value!r}: {exc}") from exc
        return value

    def assertion_threshold(self, item: _Map, kind: str, where: str) -> float | None:
        threshold_kind = _THRESHOLD_KIND.get(kind)
        line = self.key_line(item, "threshold")
        value = item.get("threshold")
        if threshold_kind is None:
            if "threshold" in item:
                raise self.fail(line, f"{where}: takes no 'threshold'")
            return None
        if value is None:
            raise self.fail(line, f"{where}: 'threshold' is required")
        if not _is_number(value):
            raise self.fail(line, f"{where}: 'threshold' must be a number, got {value!r}")
        if threshold_kind == "unit" and not 0 <= value <= 1:
            raise self.fail(line, f"{where}: 'threshold' must be from 0 to 1, got {value!r}")
        if threshold_kind == "positive" and value <= 0:
            raise self.fail(line, f"{where}: 'threshold' must be greater than 0, got {value!r}")
        if threshold_kind == "non-negative" and value < 0:
            raise self.fail(line, f"{where}: 'threshold' must be 0 or more, got {value!r}")
        return float(value)


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def load_suite(path: str | os.PathLike[str]) -> Suite:
    """Read and validate one suite file (``SuiteError`` naming the file and line on any problem).

    ``defaults.assert`` is appended to every case's own assertions. No model is called.
    """
    return _Loader(Path(path).expanduser().resolve()).load()
