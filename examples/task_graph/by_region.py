# Databricks notebook source
# Transform: revenue per region, from the orders the extract task produced.
dbutils.widgets.text("currency", "EUR")

# COMMAND ----------

from collections import defaultdict

orders = dbutils.jobs.taskValues.get(taskKey="extract", key="orders")
revenue = defaultdict(float)
for order in orders:
    revenue[order["region"]] += order["quantity"] * order["price"]
totals = {region: round(value, 2) for region, value in sorted(revenue.items())}
dbutils.jobs.taskValues.set(key="totals", value=totals)
print(f"revenue by region ({dbutils.widgets.get('currency')}): {totals}")
