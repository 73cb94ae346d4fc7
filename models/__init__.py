"""Torch-only code: architectures, uncertainty wrappers, scorers, calibration, bundles.

Nothing in this package imports `service` or `training`.
"""
