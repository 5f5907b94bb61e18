# Databricks notebook source
# Transform: units sold per product, from the orders the extract task produced.
dbutils.widgets.text("min_units", "0")

# COMMAND ----------

from collections import Counter

orders = dbutils.jobs.taskValues.get(taskKey="extract", key="orders")
units = Counter()
for order in orders:
    units[order["product"]] += order["quantity"]
minimum = int(dbutils.widgets.get("min_units"))
totals = {product: n for product, n in sorted(units.items()) if n >= minimum}
dbutils.jobs.taskValues.set(key="totals", value=totals)
print(f"units by product: {totals}")
