"""The cdk-nag rule packs every AI Factory app runs at synth time.

cdk-nag 3 is a CDK validation plugin: findings fail ``app.synth()`` (and ``cdk synth``) unless they are
fixed or acknowledged on the construct they concern with
``Validations.of(construct).acknowledge(cdk.Acknowledgment(id=..., reason=...))``.
"""

from __future__ import annotations

import aws_cdk as cdk
from cdk_nag import AwsSolutionsChecks


def apply_nag_packs(app: cdk.App) -> None:
    """Register the rule packs on ``app``. Call once, before ``app.synth()``."""
    cdk.Validations.of(app).add_plugins(AwsSolutionsChecks(app))
