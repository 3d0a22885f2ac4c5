"""The drift-detection canary: runs a feature's small canary suite through the gateway on a schedule
and publishes its pass rate as CloudWatch metrics (EMF). Standard library plus the Lambda runtime's
boto3 only: no YAML (suites are converted to JSON at synth time), no Powertools layer needed. Its
assertions are the evaluation harness's deterministic ones, shipped in the asset (``assertions``)."""
