"""The PAD pipeline: the DAG, its placement configuration, and compile / submit / schedule / local-run helpers."""
