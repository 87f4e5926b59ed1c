"""Prefect flows, the command line and the audit report: the only layer that knows Prefect."""
