"""The base of every factory stack: the name prefix its constructs start their physical names with."""

from __future__ import annotations

from typing import Any

import aws_cdk as cdk
from constructs import Construct

from ai_factory.platform.name_prefix import name_prefix as prefix_in_effect
from ai_factory.platform.name_prefix import set_name_prefix


class FactoryStack(cdk.Stack):
    """A ``cdk.Stack`` whose constructs name account-wide resources with ``name_prefix``
    (``ai_factory.platform.name_prefix``). Default: the context ``ai-factory:prefix`` seen from the
    stack, else ``ai-factory``. ``build_factory`` passes each factory's own prefix."""

    def __init__(self, scope: Construct, construct_id: str, *, name_prefix: str | None = None, **kwargs: Any):
        super().__init__(scope, construct_id, **kwargs)
        if name_prefix is not None:
            set_name_prefix(self, name_prefix)  # before any child: every construct below sees it
        self.name_prefix: str = prefix_in_effect(self)
