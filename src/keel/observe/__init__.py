"""Observation of runs: metrics, tracing, anomaly detection with alerts, and users' feedback.

`keel.observe.metrics` needs the ``server`` extra (prometheus-client) and `keel.observe.tracing` the
``otel`` extra; import them by name. Nothing here is imported by ``import keel``.
"""

from .anomaly import Alert, AlertBoard, AnomalyDetector, DatabaseAlerts, DetectorConfig, WebhookSink, WindowStats
from .feedback import Feedback, list_feedback, record_feedback

__all__ = [
    "Alert",
    "AlertBoard",
    "AnomalyDetector",
    "DatabaseAlerts",
    "DetectorConfig",
    "Feedback",
    "WebhookSink",
    "WindowStats",
    "list_feedback",
    "record_feedback",
]
