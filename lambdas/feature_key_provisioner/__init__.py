"""Deploy-time provisioning of an ``AiFeature``'s gateway API key (a CloudFormation custom resource).

The Lambda entry point is ``feature_key_provisioner.handler.on_event`` (called by the CDK
``Provider`` framework). This package is Lambda runtime code: standard library, boto3 (from the Lambda
runtime) and the light ``aif_gateway.records`` / ``aif_gateway.dynamo_store`` modules only.
"""
