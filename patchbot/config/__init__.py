"""The configuration: its records (records.py) and how TOML becomes them (load.py)."""
