"""Metrics, statistical tests, baselines, reports and single-scan prediction."""
