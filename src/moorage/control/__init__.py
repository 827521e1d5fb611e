"""Desired state: records, validation, lifecycle, the SQLite store and the reconciler.

No torch and no HTTP here: operations take and return plain data and raise domain errors.
"""
