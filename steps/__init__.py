"""Plain, typed functions that each do one Databricks action."""
