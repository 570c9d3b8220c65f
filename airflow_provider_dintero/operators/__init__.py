"""Operators of the Dintero provider."""
