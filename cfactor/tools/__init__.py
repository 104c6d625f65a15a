"""Process management for the command line: a local etcd, member processes.

This is not runtime code: it may read the wall clock and sleep, as a launcher must.
"""
