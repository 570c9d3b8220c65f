"""Triggers of the Dintero provider."""
