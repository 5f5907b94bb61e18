# Databricks notebook source
# Fails before it could call DARA back, as a notebook on a lost cluster would.
dbutils.widgets.text("promise_id", "")
dbutils.widgets.text("callback_url", "")
dbutils.widgets.text("callback_signature", "")

# COMMAND ----------

raise RuntimeError("the cluster went away before the callback cell")
