"""One module per screen; each renders snapshots and starts its own workers."""
