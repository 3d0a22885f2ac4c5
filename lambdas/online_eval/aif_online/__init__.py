"""Online evaluation of production traffic: sampling, asynchronous scoring and drift, per feature.

Standard library plus the Lambda runtime's boto3: the sampler reads Bedrock model invocation logs (so it
adds nothing to the gateway's request path), the scorer checks each sampled exchange with the eval
harness's deterministic assertions, the connector's PII detector and a judge called through the gateway,
and the drift module compares windows of the sample.
"""
