# Databricks notebook source
# Extract: makes a small, reproducible batch of orders and hands it to the next tasks
# as a task value (small JSON only; real data would go to a table).
dbutils.widgets.text("orders", "24")
dbutils.widgets.text("seed", "7")

# COMMAND ----------

import random

count = int(dbutils.widgets.get("orders"))
rng = random.Random(int(dbutils.widgets.get("seed")))
regions = ["north", "south", "east", "west"]
products = ["apples", "pears", "plums"]
orders = [
    {
        "id": i,
        "region": rng.choice(regions),
        "product": rng.choice(products),
        "quantity": rng.randint(1, 9),
        "price": round(rng.uniform(0.5, 3.0), 2),
    }
    for i in range(count)
]
dbutils.jobs.taskValues.set(key="orders", value=orders)
print(f"extracted {len(orders)} orders")
