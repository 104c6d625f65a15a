"""The fault suite: each promise of docs/faults.md tested with real etcd and real member
processes under kill -9, SIGSTOP, SIGTERM, etcd outages and overload."""
