"""Custom-resource handler for Bedrock model invocation logging (the Lambda asset of
``ai_factory.constructs.invocation_logging``). Standard library and boto3 only."""
