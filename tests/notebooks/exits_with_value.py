# Databricks notebook source
# Never calls DARA back, as a notebook with no route to DARA: it ends with
# dbutils.notebook.exit, whose value DARA reads from the run's output instead.
dbutils.widgets.text("promise_id", "")
dbutils.widgets.text("callback_url", "")
dbutils.widgets.text("callback_signature", "")
dbutils.widgets.text("name", "world")

# COMMAND ----------

import json

print("some output of the notebook's own")
dbutils.notebook.exit(json.dumps({"greeting": f"hello {dbutils.widgets.get('name')}", "rows": [1, 2, 3]}))
