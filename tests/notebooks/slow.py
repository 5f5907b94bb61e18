# Databricks notebook source
# Takes a while, then calls back: long enough to be cancelled while it runs.
dbutils.widgets.text("promise_id", "")
dbutils.widgets.text("callback_url", "")
dbutils.widgets.text("callback_signature", "")
dbutils.widgets.text("seconds", "30")

# COMMAND ----------

import time

time.sleep(float(dbutils.widgets.get("seconds")))
