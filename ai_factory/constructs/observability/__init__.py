"""Observability: the facade (``facade.Observability``) and what it builds, the alarms and dashboard
section of each feature (``feature_section``) and the platform's (``platform_section``), the drift
widgets of both (``drift_section``); ``settings`` holds the severities, thresholds and runbooks,
``queries`` the CloudWatch search expressions."""
