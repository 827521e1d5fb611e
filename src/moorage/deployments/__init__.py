"""Guarded endpoint updates: traffic shifted to the new fleet in steps, baked, rolled back on alarms."""
