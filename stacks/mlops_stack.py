"""The MLOps stack: the factory's SageMaker managed MLflow tracking server and its artifact store."""

from __future__ import annotations

from typing import Any

from constructs import Construct

from ai_factory.constructs.mlflow_tracking import MlflowTracking
from stacks.base import FactoryStack


class MlopsStack(FactoryStack):
    """One MLflow tracking server for the factory: prompt and model registries, eval and training runs.

    Context (all optional): ``ai-factory:mlflowServerName`` (default ``ai-factory``),
    ``ai-factory:mlflowServerSize`` (``Small``), ``ai-factory:mlflowVersion`` (SageMaker's default).
    Outputs ``TrackingServerArn`` and ``TrackingUri`` (the same ARN: what ``MLFLOW_TRACKING_URI`` is set
    to with the ``sagemaker-mlflow`` plugin). See ``docs/mlops.md``.

    :param tracking_props: keyword props for ``MlflowTracking`` (override the context).
    """

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        tracking_props: dict[str, Any] | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(scope, construct_id, **kwargs)
        props: dict[str, Any] = {}
        for key, prop in (
            ("ai-factory:mlflowServerName", "tracking_server_name"),
            ("ai-factory:mlflowServerSize", "tracking_server_size"),
            ("ai-factory:mlflowVersion", "mlflow_version"),
        ):
            value = self.node.try_get_context(key)
            if value is not None:
                props[prop] = str(value)
        props.update(tracking_props or {})
        self.tracking = MlflowTracking(self, "Mlflow", **props)
