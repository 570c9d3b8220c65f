"""Hooks of the Dintero provider."""
