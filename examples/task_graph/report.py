# Databricks notebook source
# Report: joins both transforms and checks they describe the same batch of orders.
dbutils.widgets.text("title", "Daily orders")

# COMMAND ----------

orders = dbutils.jobs.taskValues.get(taskKey="extract", key="orders")
revenue = dbutils.jobs.taskValues.get(taskKey="by_region", key="totals")
units = dbutils.jobs.taskValues.get(taskKey="by_product", key="totals")

expected_revenue = round(sum(o["quantity"] * o["price"] for o in orders), 2)
if abs(sum(revenue.values()) - expected_revenue) > 0.05:
    raise AssertionError(f"revenue by region {revenue} does not add up to {expected_revenue}")
if sum(units.values()) != sum(o["quantity"] for o in orders):
    raise AssertionError(f"units by product {units} do not add up to the orders")

print(dbutils.widgets.get("title"))
print(f"  orders:  {len(orders)}")
print(f"  revenue: {revenue}")
print(f"  units:   {units}")
