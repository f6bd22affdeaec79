"""The `pad` command line: sits above `padcore` (the computing package) and `pipelines` (KFP)."""
