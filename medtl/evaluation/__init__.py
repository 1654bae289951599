"""Evaluation: classification metrics, per-sample predictions, the statistics behind them (confidence intervals,
calibration, DeLong's test) and model cost (parameters, MACs, latency)."""
from .evidence import evidence, with_calibrated
from .metrics import TASKS, classification_metrics, predictions_table, single_class_metrics
from .profile import count_macs, count_parameters, latency_ms, task_bytes

__all__ = ["TASKS", "classification_metrics", "count_macs", "count_parameters", "evidence", "latency_ms",
           "predictions_table", "single_class_metrics", "task_bytes", "with_calibrated"]
