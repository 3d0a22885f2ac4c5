"""AI Factory gateway runtime: an OpenAI-compatible API in front of Amazon Bedrock.

The same code runs in the gateway Lambda (behind API Gateway) and in `ai-factory serve` (local mode).
It must not import anything heavy (mlflow, pandas, CDK): cold start is measured in benchmarks/.
"""
