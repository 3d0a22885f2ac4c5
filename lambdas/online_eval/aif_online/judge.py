"""The online judge: the eval harness's gateway judge (same system prompt, same answer parser), called
through the gateway with the judge feature's key, counting the tokens each score costs."""

from __future__ import annotations

from typing import Any

from ai_factory.evals.assertions import (
    JUDGE_SYSTEM_PROMPT,
    EvalServiceError,
    _GatewayClient,
    parse_judge_answer,
)

__all__ = ["OnlineJudge"]


class OnlineJudge:
    """``score(rubric, input, output) -> (score, reason)``; ``tokens`` holds the last call's total."""

    def __init__(self, base_url: str, api_key: str, *, model: str, timeout_s: float = 30.0) -> None:
        self.model = model
        self.tokens = 0
        self._client = _GatewayClient(base_url, api_key, timeout_s=timeout_s, attempts=2)

    def score(self, rubric: str, input_text: str, output_text: str) -> tuple[float, str]:
        user = (
            f"Rubric:\n{rubric}\n\n<input>\n{input_text}\n</input>\n\n<output>\n{output_text}\n</output>\n\n"
            'Answer with only {"score": <0..1>, "reason": "..."}.'
        )
        data: dict[str, Any] = self._client.post(
            "chat/completions",
            {
                "model": self.model,
                "messages": [
                    {"role": "system", "content": JUDGE_SYSTEM_PROMPT},
                    {"role": "user", "content": user},
                ],
                "temperature": 0,
                "max_tokens": 200,
            },
        )
        usage = data.get("usage") or {}
        self.tokens = int(usage.get("total_tokens") or 0)
        try:
            content = data["choices"][0]["message"]["content"]
        except (KeyError, IndexError, TypeError):
            raise EvalServiceError("chat response has no choices[0].message.content") from None
        return parse_judge_answer(str(content))
