"""Evaluation: classification metrics, per-sample predictions, and model cost (parameters, MACs, latency)."""
from .metrics import TASKS, classification_metrics, predictions_table, single_class_metrics
from .profile import count_macs, count_parameters, latency_ms

__all__ = ["TASKS", "classification_metrics", "count_macs", "count_parameters", "latency_ms", "predictions_table",
           "single_class_metrics"]
