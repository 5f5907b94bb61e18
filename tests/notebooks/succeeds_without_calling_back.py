# Databricks notebook source
# Does its work and ends SUCCESS, but neither calls DARA back nor exits with a value:
# a notebook whose callback cell was left out. Its run must not count as done.
dbutils.widgets.text("promise_id", "")
dbutils.widgets.text("callback_url", "")
dbutils.widgets.text("callback_signature", "")

# COMMAND ----------

print("did the work, forgot the callback cell")
