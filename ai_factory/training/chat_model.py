"""The MLflow model file for the keyword classifier (MLflow "models from code").

``train`` logs this file as the model's code, with the trained classifier as the artifact
``classifier``. Served (``mlflow models serve``, or the SageMaker endpoint built from the registered
version) it answers OpenAI-style chat requests: the last user message is classified and the label is
the assistant's answer, so the gateway's ``openai-chat`` content handler routes to it unchanged.
"""

from __future__ import annotations

import json
from typing import Any

import mlflow
from mlflow.pyfunc import ChatModel
from mlflow.types.llm import ChatChoice, ChatCompletionResponse, ChatMessage, ChatParams, TokenUsageStats

try:  # inside the repository / installed package
    from ai_factory.training.classifier import KeywordClassifier, tokens
except ImportError:  # inside a served model: classifier.py travels along as model code
    from classifier import KeywordClassifier, tokens  # type: ignore[no-redef]


class KeywordChatModel(ChatModel):
    """Classifies the last user message; the label is the answer."""

    def __init__(self) -> None:
        self.classifier: KeywordClassifier | None = None

    def load_context(self, context: Any) -> None:
        with open(context.artifacts["classifier"], encoding="utf-8") as handle:
            self.classifier = KeywordClassifier.from_dict(json.load(handle))

    def predict(  # type: ignore[override]  # ChatModel's signature, narrower than PythonModel's
        self, context: Any, messages: list[ChatMessage], params: ChatParams | None = None
    ) -> ChatCompletionResponse:
        assert self.classifier is not None, "load_context was not called"
        user = [_text(m) for m in messages if m.role == "user"]
        label = self.classifier.predict(user[-1] if user else "")
        prompt_tokens = sum(len(tokens(_text(m))) for m in messages)
        return ChatCompletionResponse(
            choices=[ChatChoice(message=ChatMessage(role="assistant", content=label), finish_reason="stop")],
            usage=TokenUsageStats(
                prompt_tokens=prompt_tokens, completion_tokens=1, total_tokens=prompt_tokens + 1
            ),
            model="keyword-classifier",
        )


def _text(message: ChatMessage) -> str:
    content = message.content
    if isinstance(content, str):
        return content
    return " ".join(str(part.get("text", "")) for part in content or [] if isinstance(part, dict))


mlflow.models.set_model(KeywordChatModel())
