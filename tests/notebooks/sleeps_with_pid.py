# Databricks notebook source
# Writes the pid of the process running it to `pid_file`, then sleeps `seconds`: a notebook
# to cancel while it runs, and to check afterwards that its process is gone.
dbutils.widgets.text("promise_id", "")
dbutils.widgets.text("callback_url", "")
dbutils.widgets.text("callback_signature", "")
dbutils.widgets.text("pid_file", "")
dbutils.widgets.text("seconds", "300")

# COMMAND ----------

import os
import time
from pathlib import Path

pid_file = Path(dbutils.widgets.get("pid_file"))
pid_file.with_suffix(".tmp").write_text(str(os.getpid()))
pid_file.with_suffix(".tmp").rename(pid_file)  # whole or absent, never half-written
time.sleep(float(dbutils.widgets.get("seconds")))
