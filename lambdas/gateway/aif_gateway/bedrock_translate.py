"""Translation between OpenAI chat requests/responses and Amazon Bedrock's Converse API.

Converse wants strictly alternating user/assistant turns that start with a user turn, system text
apart, tool calls as ``toolUse`` blocks and tool results as ``toolResult`` blocks inside a user turn.
Real agent traffic breaks those rules in ordinary ways (tool history without ``tools``, blank turns and
tool results, a call whose result never came); ``to_converse`` repairs each such shape the documented
way (docs/gateway.md, "Chat Completions compatibility") so Bedrock never rejects a valid OpenAI request.
``ChatRequest`` is the internal request model: other front doors (Messages, Responses) build one and
reuse this translation.
"""

from __future__ import annotations

import base64
import binascii
import json
from typing import Any

from .capabilities import UNKNOWN, ModelCapabilities
from .config import GuardrailRef
from .errors import InvalidRequest
from .guardrail_metering import assessment_units
from .openai_schema import ChatRequest
from .provider_types import ChatResult, TokenUsage

JSON_OBJECT_INSTRUCTION = "Respond with a single valid JSON object and nothing else."

STOP_REASONS = {
    "end_turn": "stop",
    "stop_sequence": "stop",
    "max_tokens": "length",
    "model_context_window_exceeded": "length",
    "tool_use": "tool_calls",
    "guardrail_intervened": "content_filter",
    "content_filtered": "content_filter",
}
IMAGE_FORMATS = {"png", "jpeg", "gif", "webp"}


# A cache point ends the prefix Bedrock may cache; Anthropic models accept at most four per request.
MAX_CACHE_POINTS = 4
# What a tool result with no text, and a tool call the client sent no result for, become: Bedrock
# refuses blank text blocks and an assistant toolUse without a matching toolResult.
EMPTY_TOOL_RESULT = "(the tool returned no output)"
MISSING_TOOL_RESULT = "(no result was sent for this tool call)"
EMPTY_FIRST_TURN = "(empty message)"
SYNTHESIZED_TOOL_DESCRIPTION = "Declared by an earlier turn of this conversation."
# reasoning_effort -> Anthropic extended-thinking budget (tokens); 1024 is the smallest budget allowed.
THINKING_BUDGETS = {"minimal": 1024, "low": 2048, "medium": 8192, "high": 24576}
DEFAULT_ANSWER_TOKENS = 8192  # answer room added to the thinking budget when max_tokens is not given
STOP_SEQUENCE_PATH = "/stop_sequence"  # additionalModelResponseFieldPaths entry (Anthropic models)


def to_converse(
    request: ChatRequest,
    model_id: str,
    guardrail: GuardrailRef | None,
    metadata: dict[str, str],
    caps: ModelCapabilities = UNKNOWN,
) -> dict[str, Any]:
    """The Converse request for ``request``, valid by Bedrock's rules whatever shape the OpenAI
    conversation has: alternating turns that start with the user, no blank text blocks, a toolResult
    for every toolUse of the turn before, and a toolConfig whenever tool blocks are present."""
    build = _Builder(request, caps)
    build.messages()
    kwargs: dict[str, Any] = {"modelId": model_id, "messages": build.turns}
    system = build.system
    if request.response_format and request.response_format["type"] == "json_object":
        system.append({"text": JSON_OBJECT_INSTRUCTION})
    if system:
        if request.auto_cache and build.caching and "cachePoint" not in system[-1]:
            system.append(_cache_point())
        kwargs["system"] = system
    inference: dict[str, Any] = {}
    if request.max_tokens is not None:
        inference["maxTokens"] = request.max_tokens
    if request.temperature is not None:
        inference["temperature"] = request.temperature
    if request.top_p is not None:
        inference["topP"] = request.top_p
    if request.stop:
        inference["stopSequences"] = request.stop
    tool_config = build.tool_config()
    if tool_config:
        kwargs["toolConfig"] = tool_config
    thinking = _thinking(request, caps, build.turns, tool_config)
    if thinking is not None:
        budget, max_tokens = thinking
        inference["maxTokens"] = max_tokens
        # Extended thinking refuses a changed temperature or top_p (Anthropic's rule).
        inference.pop("temperature", None)
        inference.pop("topP", None)
        kwargs["additionalModelRequestFields"] = {"thinking": {"type": "enabled", "budget_tokens": budget}}
    if inference:
        kwargs["inferenceConfig"] = inference
    if request.response_format and request.response_format["type"] == "json_schema":
        spec = request.response_format["json_schema"]
        schema: dict[str, Any] = {"schema": json.dumps(spec["schema"])}
        if isinstance(spec.get("name"), str):
            schema["name"] = spec["name"]
        kwargs["outputConfig"] = {"textFormat": {"type": "json_schema", "structure": {"jsonSchema": schema}}}
    if guardrail is not None:
        grounding = request.grounding
        if grounding is not None and grounding.check:
            _guard_grounded_turn(build.turns, grounding.source)
        elif guardrail.scope == "latest":
            _guard_latest_turn(build.turns)
        kwargs["guardrailConfig"] = {
            "guardrailIdentifier": guardrail.identifier,
            "guardrailVersion": guardrail.version,
            "trace": "enabled",
        }
    if metadata:
        kwargs["requestMetadata"] = metadata
    if request.stop and "anthropic." in model_id:
        # Anthropic models report which stop sequence matched when asked for the field.
        kwargs["additionalModelResponseFieldPaths"] = [STOP_SEQUENCE_PATH]
    _cap_cache_points(kwargs)
    return kwargs


def matched_stop_sequence(
    stop_reason: str | None, fields: dict[str, Any] | None, stop: list[str]
) -> str | None:
    """Which of the request's ``stop`` sequences ended the answer: the model's own report
    (``additionalModelResponseFields.stop_sequence``, Anthropic models) or, when only one was sent,
    that one. None when the answer did not end on a stop sequence or the model does not say which."""
    if stop_reason != "stop_sequence":
        return None
    reported = (fields or {}).get("stop_sequence")
    if isinstance(reported, str) and reported:
        return reported
    return stop[0] if len(stop) == 1 else None


class _Builder:
    """Turns OpenAI messages into Converse turns, one rule at a time (see ``to_converse``)."""

    def __init__(self, request: ChatRequest, caps: ModelCapabilities) -> None:
        self.request = request
        self.caching = caps.prompt_caching
        # tool_choice "none" with tool history: Converse has no "none", and Bedrock requires tool
        # definitions whenever tool blocks are present, so the history is sent as text and no tools are
        # offered: the model cannot call one.
        self.tools_as_text = request.tool_choice == "none"
        self.system: list[dict[str, Any]] = []
        self.turns: list[dict[str, Any]] = []
        self.used_tools: dict[str, None] = {}  # tool names in the history, in order
        self.call_names: dict[str, str] = {}  # tool call id -> tool name

    def messages(self) -> None:
        first_speaker = ""
        for i, message in enumerate(self.request.messages):
            role, content = message["role"], message.get("content")
            if role in ("system", "developer"):
                self.system.extend(self._texts(content, message))
                continue
            first_speaker = first_speaker or role
            if role == "user":
                self._append("user", self._user_blocks(content, message, f"messages[{i}]"))
            elif role == "assistant":
                self._append("assistant", self._assistant_blocks(message))
            else:  # tool
                self._append("user", [self._tool_result(message), *self._cache_point(message)])
        if first_speaker == "assistant":
            raise InvalidRequest(
                "The first non-system message must come from the user (Bedrock Converse requires it).",
                param="messages",
            )
        if not self.turns or self.turns[0]["role"] != "user":  # the user's first message was blank
            self.turns.insert(0, {"role": "user", "content": [{"text": EMPTY_FIRST_TURN}]})
        self._pair_tool_results()
        self._trim_final_assistant()

    # -- blocks ---------------------------------------------------------------------------------------

    def _cache_point(self, marked: Any) -> list[dict[str, Any]]:
        marked_here = self.caching and isinstance(marked, dict) and marked.get("cache_control")
        return [_cache_point()] if marked_here else []

    def _texts(self, content: Any, message: dict[str, Any]) -> list[dict[str, Any]]:
        blocks: list[dict[str, Any]] = []
        if isinstance(content, str):
            if content.strip():
                blocks.append({"text": content})
        else:
            for part in content or []:
                text = part.get("text") if part.get("type") == "text" else part.get("refusal")
                if isinstance(text, str) and text.strip():
                    blocks.append({"text": text})
                    blocks.extend(self._cache_point(part))
        if blocks:
            blocks.extend(self._cache_point(message))
        return blocks

    def _user_blocks(self, content: Any, message: dict[str, Any], path: str) -> list[dict[str, Any]]:
        if isinstance(content, str):
            return self._texts(content, message)
        blocks: list[dict[str, Any]] = []
        for j, part in enumerate(content):
            if part["type"] == "text":
                if part["text"].strip():
                    blocks.append({"text": part["text"]})
                    blocks.extend(self._cache_point(part))
            else:
                image = _image_block(part["image_url"]["url"], f"{path}.content[{j}].image_url.url")
                blocks.append({"image": image})
                blocks.extend(self._cache_point(part))
        if blocks:
            blocks.extend(self._cache_point(message))
        return blocks

    def _assistant_blocks(self, message: dict[str, Any]) -> list[dict[str, Any]]:
        blocks = self._texts(message.get("content"), message)
        for call in message.get("tool_calls") or []:
            fn = call["function"]
            self.call_names[call["id"]] = fn["name"]
            args = json.loads(fn.get("arguments") or "{}")
            if self.tools_as_text:
                blocks.append({"text": f"[called tool {fn['name']} with {json.dumps(args)}]"})
                continue
            self.used_tools[fn["name"]] = None
            blocks.append({"toolUse": {"toolUseId": call["id"], "name": fn["name"], "input": args}})
        return blocks

    def _tool_result(self, message: dict[str, Any]) -> dict[str, Any]:
        text = "\n".join(b["text"] for b in self._texts(message.get("content"), {}) if "text" in b)
        text = text or EMPTY_TOOL_RESULT
        if self.tools_as_text:
            name = self.call_names.get(message["tool_call_id"], "tool")
            return {"text": f"[result of tool {name}: {text}]"}
        return {"toolResult": {"toolUseId": message["tool_call_id"], "content": [{"text": text}]}}

    def _append(self, role: str, blocks: list[dict[str, Any]]) -> None:
        if not any("cachePoint" not in b for b in blocks):
            return  # a blank message: nothing to send (its neighbours merge if they share a role)
        if self.turns and self.turns[-1]["role"] == role:
            self.turns[-1]["content"].extend(blocks)  # Converse needs alternation: merge same-role turns
        else:
            self.turns.append({"role": role, "content": blocks})

    # -- structure ------------------------------------------------------------------------------------

    def _pair_tool_results(self) -> None:
        """Each user turn after an assistant turn with toolUse starts with one toolResult per toolUse
        (Anthropic's rule); a result whose call is not in the turn just before becomes text."""
        for n, turn in enumerate(self.turns):
            if turn["role"] != "user":
                continue
            before = self.turns[n - 1]["content"] if n else []
            pending = [b["toolUse"]["toolUseId"] for b in before if "toolUse" in b]
            results, rest = [], []
            for block in turn["content"]:
                if "toolResult" in block:
                    use_id = block["toolResult"]["toolUseId"]
                    if use_id in pending:
                        results.append(block)
                        pending.remove(use_id)
                        continue
                    name = self.call_names.get(use_id, "tool")
                    text = block["toolResult"]["content"][0]["text"]
                    block = {"text": f"[result of tool {name} ({use_id}): {text}]"}
                rest.append(block)
            for use_id in pending:
                results.append(
                    {
                        "toolResult": {
                            "toolUseId": use_id,
                            "content": [{"text": MISSING_TOOL_RESULT}],
                            "status": "error",
                        }
                    }
                )
            turn["content"] = results + rest
        last = self.turns[-1]
        if last["role"] == "assistant" and any("toolUse" in b for b in last["content"]):
            # A conversation may not end on tool calls nobody answered: they are shown as text.
            last["content"] = [
                {"text": f"[called tool {b['toolUse']['name']} with {json.dumps(b['toolUse']['input'])}]"}
                if "toolUse" in b
                else b
                for b in last["content"]
            ]

    def _trim_final_assistant(self) -> None:
        # A final assistant turn is a prefill the model continues; Bedrock refuses trailing whitespace.
        last = self.turns[-1]
        if last["role"] != "assistant":
            return
        for block in reversed(last["content"]):
            if "text" in block:
                block["text"] = block["text"].rstrip()
                break

    def tool_config(self) -> dict[str, Any] | None:
        request = self.request
        has_tool_blocks = any(
            "toolUse" in b or "toolResult" in b for turn in self.turns for b in turn["content"]
        )
        if self.tools_as_text or (not request.tools and not has_tool_blocks):
            return None
        tools: list[dict[str, Any]] = []
        declared = set()
        for tool in request.tools or []:
            fn = tool["function"]
            declared.add(fn["name"])
            spec: dict[str, Any] = {
                "name": fn["name"],
                "inputSchema": {"json": fn.get("parameters") or {"type": "object", "properties": {}}},
            }
            if fn.get("description"):
                spec["description"] = fn["description"]
            tools.append({"toolSpec": spec})
            tools.extend(self._cache_point(tool))
        # Tool history without (all of) its tools: Bedrock needs a definition for every tool the
        # conversation used, so a permissive one is declared from the history.
        for name in self.used_tools:
            if name not in declared:
                tools.append(
                    {
                        "toolSpec": {
                            "name": name,
                            "description": SYNTHESIZED_TOOL_DESCRIPTION,
                            "inputSchema": {"json": {"type": "object"}},
                        }
                    }
                )
        if request.auto_cache and self.caching and tools and "cachePoint" not in tools[-1]:
            tools.append(_cache_point())
        config: dict[str, Any] = {"tools": tools}
        choice = request.tool_choice
        if choice == "required":
            config["toolChoice"] = {"any": {}}
        elif isinstance(choice, dict):
            config["toolChoice"] = {"tool": {"name": choice["function"]["name"]}}
        elif choice == "auto":
            config["toolChoice"] = {"auto": {}}
        return config


def _thinking(
    request: ChatRequest,
    caps: ModelCapabilities,
    turns: list[dict[str, Any]],
    tool_config: dict[str, Any] | None,
) -> tuple[int, int] | None:
    """(budget_tokens, maxTokens) for Anthropic extended thinking, or None when it is not sent: no
    reasoning_effort, a model without it, a forced tool choice (Anthropic refuses both together), room
    for less than the smallest budget, or an unfinished tool loop (its thinking blocks would have to be
    sent back, and OpenAI clients do not keep them)."""
    effort = request.reasoning_effort
    if effort is None or caps.reasoning != "thinking":
        return None
    if tool_config and set(tool_config.get("toolChoice", {})) & {"any", "tool"}:
        return None
    assistant_turns = [t for t in turns if t["role"] == "assistant"]
    if assistant_turns and any("toolUse" in b for b in assistant_turns[-1]["content"]):
        return None
    budget = request.thinking_budget or THINKING_BUDGETS.get(effort, THINKING_BUDGETS["medium"])
    if request.max_tokens is not None:
        # OpenAI counts reasoning tokens within max_completion_tokens, as Anthropic does.
        if request.max_tokens <= THINKING_BUDGETS["minimal"]:
            return None
        return min(budget, request.max_tokens - 1), request.max_tokens
    max_tokens = budget + DEFAULT_ANSWER_TOKENS
    if caps.max_output_tokens is not None:
        max_tokens = min(max_tokens, caps.max_output_tokens)
        budget = min(budget, max_tokens - 1)
    return budget, max_tokens


def _guard_latest_turn(turns: list[dict[str, Any]]) -> None:
    """Mark what the guardrail evaluates: the newest user turn's text, and a copy of the text of the tool
    results it carries (Bedrock evaluates no ``toolResult``, and ``guardContent`` cannot sit inside one).
    With ``guardContent`` present, the guardrail skips the rest of the conversation and the system
    prompt: earlier turns were checked when they were new, the system prompt is the developer's."""
    last = next((t for t in reversed(turns) if t["role"] == "user"), None)
    if last is None:
        return
    blocks: list[dict[str, Any]] = []
    copies: list[dict[str, Any]] = []
    for block in last["content"]:
        if "text" in block:
            blocks.append(
                {"guardContent": {"text": {"text": block["text"], "qualifiers": ["guard_content"]}}}
            )
            continue
        blocks.append(block)
        for part in block.get("toolResult", {}).get("content", []):
            if part.get("text", "").strip():
                copies.append(
                    {"guardContent": {"text": {"text": part["text"], "qualifiers": ["guard_content"]}}}
                )
    last["content"] = blocks + copies


def _guard_grounded_turn(turns: list[dict[str, Any]], source: str) -> None:
    """The contextual grounding check: in the newest user turn, the retrieved sources become a
    ``guardContent`` block qualified ``grounding_source`` and the user's own text blocks ``query``
    (the guardrail then scores the answer's grounding in the one and relevance to the other)."""
    last = next((t for t in reversed(turns) if t["role"] == "user"), None)
    if last is None:
        return
    blocks: list[dict[str, Any]] = []
    for block in last["content"]:
        if "text" in block:
            qualifier = "grounding_source" if block["text"] == source else "query"
            blocks.append({"guardContent": {"text": {"text": block["text"], "qualifiers": [qualifier]}}})
        else:
            blocks.append(block)
    last["content"] = blocks


def _cache_point() -> dict[str, Any]:
    return {"cachePoint": {"type": "default"}}


def _cap_cache_points(kwargs: dict[str, Any]) -> None:
    """Each cache point follows content (never first, never doubled: a part and its message may both be
    marked), and only the first MAX_CACHE_POINTS are kept (tools, system, then messages: Bedrock's
    order)."""
    left = MAX_CACHE_POINTS
    lists = [kwargs.get("toolConfig", {}).get("tools", []), kwargs.get("system", [])]
    lists += [turn["content"] for turn in kwargs["messages"]]
    for blocks in lists:
        kept: list[dict[str, Any]] = []
        for block in blocks:
            if "cachePoint" in block:
                if not left or not kept or "cachePoint" in kept[-1]:
                    continue
                left -= 1
            kept.append(block)
        blocks[:] = kept


def _image_block(url: str, path: str) -> dict[str, Any]:
    header, _, data = url.partition(",")
    fmt = header[len("data:image/") :].split(";")[0]
    if fmt == "jpg":
        fmt = "jpeg"
    if fmt not in IMAGE_FORMATS or ";base64" not in header:
        raise InvalidRequest(
            f"'{path}' must be a base64 data URL of a png, jpeg, gif or webp image.", param=path
        )
    try:
        raw = base64.b64decode(data, validate=True)
    except (binascii.Error, ValueError):
        raise InvalidRequest(f"'{path}' holds invalid base64 data.", param=path) from None
    return {"format": fmt, "source": {"bytes": raw}}


def from_converse(response: dict[str, Any], stop: list[str] | None = None) -> ChatResult:
    message = response.get("output", {}).get("message", {})
    texts: list[str] = []
    reasoning: list[str] = []
    signature = ""
    tool_calls: list[dict[str, Any]] = []
    for block in message.get("content", []):
        if "text" in block:
            texts.append(block["text"])
        elif "reasoningContent" in block:
            text = block["reasoningContent"].get("reasoningText", {})
            reasoning.append(text.get("text", ""))
            signature = text.get("signature") or signature
        elif "toolUse" in block:
            use = block["toolUse"]
            tool_calls.append(
                {
                    "id": use["toolUseId"],
                    "type": "function",
                    "function": {"name": use["name"], "arguments": json.dumps(use.get("input", {}))},
                }
            )
    stop_reason = response.get("stopReason", "end_turn")
    usage = response.get("usage", {})
    return ChatResult(
        text="".join(texts),
        finish_reason=STOP_REASONS.get(stop_reason, "stop"),
        usage=TokenUsage(
            input=int(usage.get("inputTokens", 0)),
            output=int(usage.get("outputTokens", 0)),
            cache_read=int(usage.get("cacheReadInputTokens", 0) or 0),
            cache_write=int(usage.get("cacheWriteInputTokens", 0) or 0),
        ),
        tool_calls=tool_calls,
        guardrail_intervened=stop_reason == "guardrail_intervened",
        reasoning="".join(reasoning),
        guardrail_units=assessment_units(response.get("trace")),
        reasoning_signature=signature,
        stop_sequence=matched_stop_sequence(
            stop_reason, response.get("additionalModelResponseFields"), stop or []
        ),
    )
