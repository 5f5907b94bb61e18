# Databricks notebook source
# A one-task job whose notebook calls DARA back: POST /jobs/deploy sees the callback cell
# (dara_resolve) and waits for the callback instead of watching the run state.
dbutils.widgets.text("promise_id", "")
dbutils.widgets.text("callback_url", "")
dbutils.widgets.text("callback_signature", "")
dbutils.widgets.text("name", "world")
dbutils.widgets.text("count", "10")
dbutils.widgets.text("fail", "")

# COMMAND ----------

# DARA callback cell -- copy this cell into any notebook DARA starts. Standard library only.
# dara_resolve(value) settles the waiting pipeline with a JSON value; dara_reject(error) fails
# it with the error's text. If DARA is unreachable (restarting, say) the call is retried with
# backoff for up to DARA_CALLBACK_PATIENCE seconds, so a short outage loses nothing.
import json
import time
import urllib.error
import urllib.request

DARA_CALLBACK_PATIENCE = 600


def _dara_post(route, body):
    url = dbutils.widgets.get("callback_url").rstrip("/") + route
    body = dict(body, id=dbutils.widgets.get("promise_id"), token=dbutils.widgets.get("callback_signature"))
    data = json.dumps(body).encode()
    deadline, delay = time.monotonic() + DARA_CALLBACK_PATIENCE, 1.0
    while True:
        request = urllib.request.Request(url, data, {"Content-Type": "application/json"}, method="POST")
        try:
            with urllib.request.urlopen(request, timeout=30) as response:
                return json.load(response)
        except urllib.error.HTTPError as error:
            if error.code < 500 and error.code != 429:  # our request is wrong: retrying won't help
                raise RuntimeError(f"DARA refused the callback ({error.code}): {error.read().decode()}") from error
            problem = error
        except (urllib.error.URLError, OSError) as error:
            problem = error
        if time.monotonic() + delay > deadline:
            raise RuntimeError(f"DARA unreachable at {url} for {DARA_CALLBACK_PATIENCE}s: {problem}")
        time.sleep(delay)
        delay = min(delay * 2, 60.0)


def dara_resolve(value):
    return _dara_post("/resolve", {"value": value})


def dara_reject(error):
    return _dara_post("/reject", {"error": f"{type(error).__name__}: {error}"})

# COMMAND ----------

try:
    name = dbutils.widgets.get("name")
    count = int(dbutils.widgets.get("count"))
    if dbutils.widgets.get("fail"):
        raise ValueError(f"asked to fail: {dbutils.widgets.get('fail')}")
    result = {"greeting": f"hello {name}", "sum_of_squares": sum(i * i for i in range(count))}
except Exception as error:
    dara_reject(error)
    raise

dara_resolve(result)
