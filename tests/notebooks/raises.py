# Databricks notebook source
# Fails with an exception of its own, raised a call deep, before any callback cell.
dbutils.widgets.text("promise_id", "")
dbutils.widgets.text("callback_url", "")
dbutils.widgets.text("callback_signature", "")

# COMMAND ----------


def parse(value):
    raise ValueError(f"bad input {value}")


parse(42)
