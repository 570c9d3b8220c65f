"""Transfers of the Dintero provider."""
