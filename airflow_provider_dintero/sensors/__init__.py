"""Sensors of the Dintero provider."""
