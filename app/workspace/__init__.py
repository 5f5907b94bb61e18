"""The Databricks workspace DARA talks to: a real one, or an embedded local one."""
