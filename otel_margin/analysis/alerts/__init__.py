"""Margin alerts: SQL rule files, their evaluation, history (``alert_events``) and delivery."""
