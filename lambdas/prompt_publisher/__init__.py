"""Deploy-time publication of an ``AiFeature``'s prompts into the gateway's prompt view (a CloudFormation
custom resource), so a feature's canary and callers find its prompts as soon as the stack is deployed.

The Lambda entry point is ``prompt_publisher.handler.on_event`` (called by the CDK ``Provider``
framework). Lambda runtime code: standard library and boto3 (from the Lambda runtime) only.
"""
