"""The few MLflow tracking-server calls the online scorer makes, over MLflow's REST API with botocore.

Why not the ``mlflow`` client: ``mlflow-tracing`` plus ``sagemaker-mlflow`` would bring pydantic,
protobuf and the OpenTelemetry SDK (binary wheels built for Lambda's platform, tens of MB and a slower
cold start) for three HTTP calls. botocore is in the Lambda runtime and signs requests the way the
``sagemaker-mlflow`` plugin does:

* a tracking URI that is a SageMaker tracking-server ARN resolves to ``https://<region>.experiments.
  sagemaker.aws`` (or ``AIF_MLFLOW_ENDPOINT``); each request carries ``x-mlflow-sm-tracking-server-arn``
  and a SigV4 signature for the service ``sagemaker-mlflow`` with the function's credentials;
* an ``http(s)://`` tracking URI is a plain MLflow server (``mlflow server``, local runs and tests):
  no signature.

Calls (MLflow 3.17's REST API): ``GET /api/2.0/mlflow/experiments/get-by-name`` and ``POST .../create``
(the experiment, once per container), ``POST /v1/traces`` (OTLP/JSON spans, header
``x-mlflow-experiment-id``: the ingestion path MLflow's own client uses on servers from 3.4) and
``POST /api/3.0/mlflow/traces/{trace_id}/assessments`` (one feedback per score); for the drift job's
expiry, ``POST /api/3.0/mlflow/traces/search`` and ``POST /api/2.0/mlflow/traces/delete-traces``.
"""

from __future__ import annotations

import json
import re
from typing import Any
from urllib.parse import quote

__all__ = ["MlflowRest", "MlflowRestError", "endpoint_of"]

_ARN = re.compile(
    r"^arn:(?P<partition>aws[a-z-]*):sagemaker:(?P<region>[a-z0-9-]+):\d{12}:mlflow-tracking-server/[A-Za-z0-9-]+$"
)
EXPERIMENT_HEADER = "x-mlflow-experiment-id"
ARN_HEADER = "x-mlflow-sm-tracking-server-arn"
SIGNING_SERVICE = "sagemaker-mlflow"


class MlflowRestError(RuntimeError):
    """A call the tracking server refused or could not answer; ``status`` 0 for no HTTP answer."""

    def __init__(self, call: str, status: int, detail: str) -> None:
        super().__init__(f"MLflow {call}: HTTP {status} {detail}" if status else f"MLflow {call}: {detail}")
        self.call, self.status, self.detail = call, status, detail


def endpoint_of(tracking_uri: str) -> tuple[str, str | None]:
    """``(base URL, region to sign for)`` of a tracking URI: ``region`` is None for a plain server.
    Raises ValueError for anything else (a deployment error, named)."""
    if tracking_uri.startswith(("http://", "https://")):
        return tracking_uri.rstrip("/"), None
    match = _ARN.match(tracking_uri)
    if match is None:
        raise ValueError(
            "MLflow tracking URI must be a SageMaker mlflow-tracking-server ARN or an http(s):// URL, "
            f"got {tracking_uri!r}"
        )
    return f"https://{match['region']}.experiments.sagemaker.aws", match["region"]


class MlflowRest:
    """A minimal MLflow REST client (see the module docstring).

    :param tracking_uri: a SageMaker tracking-server ARN or an ``http(s)://`` URL.
    :param endpoint: overrides the URL an ARN resolves to (signing stays on).
    :param credentials: botocore credentials; default: the runtime's (Lambda's role).
    """

    def __init__(
        self,
        tracking_uri: str,
        *,
        endpoint: str | None = None,
        credentials: Any = None,
        timeout_s: int = 10,
    ) -> None:
        base, self.region = endpoint_of(tracking_uri)
        self.base_url = (endpoint or base).rstrip("/")
        self.arn = tracking_uri if self.region else None
        self._credentials = credentials
        self._timeout_s = timeout_s
        self._http: Any = None
        self._experiments: dict[str, str] = {}

    # ------------------------------------------------------------------------------------- calls

    def experiment_id(
        self, name: str, tags: dict[str, str] | None = None, *, create: bool = True
    ) -> str | None:
        """The id of experiment ``name``, created (with ``tags``) when missing and ``create``, else
        None; cached per client."""
        if name in self._experiments:
            return self._experiments[name]
        call = "GetExperimentByName"
        status, data = self._call(
            "GET", f"/api/2.0/mlflow/experiments/get-by-name?experiment_name={quote(name, safe='')}", call
        )
        if status == 404 and not create:
            return None
        if status == 404:
            status, data = self._call(
                "POST",
                "/api/2.0/mlflow/experiments/create",
                "CreateExperiment",
                {"name": name, "tags": [{"key": k, "value": v} for k, v in (tags or {}).items()]},
            )
            if status == 200:
                self._experiments[name] = str(data["experiment_id"])
                return self._experiments[name]
            if data.get("error_code") != "RESOURCE_ALREADY_EXISTS":  # else another scorer was first
                raise self._error("CreateExperiment", status, data)
            status, data = self._call(
                "GET", f"/api/2.0/mlflow/experiments/get-by-name?experiment_name={quote(name, safe='')}", call
            )
        if status != 200:
            raise self._error(call, status, data)
        self._experiments[name] = str(data["experiment"]["experiment_id"])
        return self._experiments[name]

    def log_spans(self, experiment_id: str, otlp: dict[str, Any]) -> None:
        """Send an OTLP/JSON ``ExportTraceServiceRequest`` to the experiment."""
        status, data = self._call("POST", "/v1/traces", "LogSpans", otlp, {EXPERIMENT_HEADER: experiment_id})
        if status != 200:
            raise self._error("LogSpans", status, data)

    def create_assessment(self, assessment: dict[str, Any]) -> str:
        """Log one assessment (MLflow's ``Assessment`` in proto JSON); returns its id."""
        path = f"/api/3.0/mlflow/traces/{quote(str(assessment['trace_id']), safe='')}/assessments"
        status, data = self._call("POST", path, "CreateAssessment", {"assessment": assessment})
        if status != 200:
            raise self._error("CreateAssessment", status, data)
        return str(data.get("assessment", {}).get("assessment_id", ""))

    def search_trace_ids(self, experiment_id: str, filter_string: str, max_results: int = 100) -> list[str]:
        """Ids of the experiment's traces matching ``filter_string`` (MLflow's trace search syntax)."""
        body: dict[str, Any] = {
            "locations": [
                {"type": "MLFLOW_EXPERIMENT", "mlflow_experiment": {"experiment_id": experiment_id}}
            ],
            "filter": filter_string,
            "max_results": max_results,
        }
        ids: list[str] = []
        while True:
            status, data = self._call("POST", "/api/3.0/mlflow/traces/search", "SearchTraces", body)
            if status != 200:
                raise self._error("SearchTraces", status, data)
            ids += [str(t["trace_id"]) for t in data.get("traces", []) if t.get("trace_id")]
            if not data.get("next_page_token"):
                return ids
            body["page_token"] = data["next_page_token"]

    def delete_traces(self, experiment_id: str, trace_ids: list[str]) -> int:
        """Delete these traces (with their spans and assessments); returns how many were deleted."""
        deleted = 0
        for start in range(0, len(trace_ids), 100):
            status, data = self._call(
                "POST",
                "/api/2.0/mlflow/traces/delete-traces",
                "DeleteTraces",
                {"experiment_id": experiment_id, "request_ids": trace_ids[start : start + 100]},
            )
            if status != 200:
                raise self._error("DeleteTraces", status, data)
            deleted += int(data.get("traces_deleted") or 0)
        return deleted

    def close(self) -> None:
        if self._http is not None:
            self._http.close()
            self._http = None

    # ----------------------------------------------------------------------------------- transport

    def _call(
        self,
        method: str,
        path: str,
        call: str,
        body: dict[str, Any] | None = None,
        headers: dict[str, str] | None = None,
    ) -> tuple[int, dict[str, Any]]:
        from botocore.awsrequest import AWSRequest

        if self._http is None:
            from botocore.httpsession import URLLib3Session

            self._http = URLLib3Session(timeout=self._timeout_s)
        data = json.dumps(body, separators=(",", ":")).encode("utf-8") if body is not None else None
        all_headers = {"Content-Type": "application/json", **(headers or {})}
        request = AWSRequest(method=method, url=self.base_url + path, data=data, headers=all_headers)
        if self.region is not None:
            self._sign(request)
        try:
            response = self._http.send(request.prepare())
        except Exception as exc:  # no answer (DNS, TLS, timeout): the caller decides what it costs
            raise MlflowRestError(call, 0, f"{type(exc).__name__}: {exc}") from exc
        text = response.content.decode("utf-8", "replace") if response.content else ""
        try:
            parsed = json.loads(text) if text else {}
        except ValueError:
            parsed = {"message": text[:300]}
        return response.status_code, parsed if isinstance(parsed, dict) else {}

    def _sign(self, request: Any) -> None:
        from botocore.auth import SigV4Auth

        if self._credentials is None:
            import botocore.session

            self._credentials = botocore.session.get_session().get_credentials()
            if self._credentials is None:
                raise MlflowRestError("sign", 0, "no AWS credentials to sign MLflow requests with")
        assert self.arn is not None and self.region is not None
        request.headers[ARN_HEADER] = self.arn
        frozen = (
            self._credentials.get_frozen_credentials()
            if hasattr(self._credentials, "get_frozen_credentials")
            else self._credentials
        )
        SigV4Auth(frozen, SIGNING_SERVICE, self.region).add_auth(request)

    @staticmethod
    def _error(call: str, status: int, data: dict[str, Any]) -> MlflowRestError:
        detail = str(data.get("error_code") or "") + (f": {data['message']}" if data.get("message") else "")
        return MlflowRestError(call, status, (detail or str(data.get("detail") or ""))[:300])
