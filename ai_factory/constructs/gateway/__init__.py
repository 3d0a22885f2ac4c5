"""The LLM gateway construct and its parts: ``LlmGateway`` (the facade that wires them), ``guardrail``
(the Bedrock Guardrail and its versions), ``usage_ledger`` (keys and usage tables, spill queues),
``prompt_view`` (the bucket the prompt registry publishes to) and ``api`` (the REST API in front).
Each part keeps the cdk-nag acknowledgements of the resources it creates beside them."""
