"""Turning the request log into answers: calibration on feedback, drift against the bundle's reference."""
