# Databricks notebook source
# A one-task job whose notebook calls DARA back: POST /jobs/deploy sees the callback cell
# (dara_resolve) and waits for the callback instead of watching the run state.
dbutils.widgets.text("promise_id", "")
dbutils.widgets.text("callback_url", "")
dbutils.widgets.text("callback_signature", "")
dbutils.widgets.text("name", "world")
dbutils.widgets.text("count", "10")
dbutils.widgets.text("fail", "")
# Optional: where the callback cell gets an OAuth token for the Databricks Apps proxy.
dbutils.widgets.text("dara_secret_scope", "")
dbutils.widgets.text("dara_workspace_url", "")

# COMMAND ----------

# DARA callback cell -- copy this cell into any notebook DARA starts. Standard library only.
# dara_resolve(value) settles the waiting pipeline with a JSON value; dara_reject(error) fails
# it with the error's text. If DARA is unreachable (restarting, say) the call is retried with
# backoff for up to DARA_CALLBACK_PATIENCE seconds, so a short outage loses nothing.
# DARA running as a Databricks App sits behind the Apps proxy, which lets a call through only
# with an OAuth token. Name a secret scope in the job parameter `dara_secret_scope`, holding
# `client-id` and `client-secret` of a service principal allowed to use the App: the cell
# trades them for a token at the workspace's /oidc/v1/token (`dara_workspace_url`, else this
# workspace) and sends it as the bearer. If no token can be had, or the proxy turns the call
# away, the cell says so and returns None: end the notebook with
# dbutils.notebook.exit(json.dumps(value)) and DARA finishes the wait with the exit value.
import base64
import json
import time
import urllib.error
import urllib.parse
import urllib.request

DARA_CALLBACK_PATIENCE = 600
_dara_tokens = {}  # secret scope -> (OAuth token, when to fetch a new one)


def _dara_widget(name):
    try:
        return dbutils.widgets.get(name)
    except Exception:  # a notebook (or job) without that parameter
        return ""


def _dara_bearer():
    """An OAuth token for the service principal in the `dara_secret_scope` scope, or None."""
    scope = _dara_widget("dara_secret_scope")
    if not scope:
        return None
    token, renew_at = _dara_tokens.get(scope, (None, 0.0))
    if token and time.monotonic() < renew_at:
        return token
    try:
        workspace = _dara_widget("dara_workspace_url") or "https://" + spark.conf.get("spark.databricks.workspaceUrl")
        client = f"{dbutils.secrets.get(scope, 'client-id')}:{dbutils.secrets.get(scope, 'client-secret')}"
        form = urllib.parse.urlencode({"grant_type": "client_credentials", "scope": "all-apis"}).encode()
        headers = {
            "Authorization": "Basic " + base64.b64encode(client.encode()).decode(),
            "Content-Type": "application/x-www-form-urlencoded",
        }
        request = urllib.request.Request(workspace.rstrip("/") + "/oidc/v1/token", form, headers, method="POST")
        with urllib.request.urlopen(request, timeout=30) as response:
            answer = json.load(response)
        token = answer["access_token"]
    except Exception as error:  # any failure: the exit value still completes the run
        print(
            f"DARA callback: no OAuth token from secret scope {scope!r} ({type(error).__name__}: {error}); calling without one"
        )
        return None
    _dara_tokens[scope] = (token, time.monotonic() + float(answer.get("expires_in", 3600)) / 2)
    return token


def _dara_answered(detail):
    """Whether a refusal is DARA's own (a JSON `detail`), not the Apps proxy's."""
    try:
        return "detail" in json.loads(detail)
    except Exception:
        return False


def _dara_post(route, body):
    url = dbutils.widgets.get("callback_url").rstrip("/") + route
    body = dict(body, id=dbutils.widgets.get("promise_id"), token=dbutils.widgets.get("callback_signature"))
    data = json.dumps(body).encode()
    deadline, delay = time.monotonic() + DARA_CALLBACK_PATIENCE, 1.0
    while True:
        headers = {"Content-Type": "application/json"}
        bearer = _dara_bearer()
        if bearer:
            headers["Authorization"] = f"Bearer {bearer}"
        request = urllib.request.Request(url, data, headers, method="POST")
        try:
            with urllib.request.urlopen(request, timeout=30) as response:
                return json.load(response)
        except urllib.error.HTTPError as error:
            detail = error.read().decode(errors="replace")
            if error.code in (401, 403) and not _dara_answered(detail):
                print(
                    f"DARA callback: the Databricks Apps proxy refused it ({error.code}); the run can "
                    "still finish through this notebook's exit value (dbutils.notebook.exit)"
                )
                return None
            if error.code < 500 and error.code != 429:  # our request is wrong: retrying won't help
                raise RuntimeError(
                    f"DARA refused the callback ({error.code}) of {len(data)} bytes: {detail}"
                ) from error
            problem = error
        except (urllib.error.URLError, OSError) as error:
            problem = error
        if time.monotonic() + delay > deadline:
            raise RuntimeError(f"DARA unreachable at {url} for {DARA_CALLBACK_PATIENCE}s: {problem}")
        time.sleep(delay)
        delay = min(delay * 2, 60.0)


def dara_resolve(value):
    return _dara_post("/api/resolve", {"value": value})


def dara_reject(error):
    return _dara_post("/api/reject", {"error": f"{type(error).__name__}: {error}"})


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
# The exit value finishes the wait as well, should the callback not reach DARA.
dbutils.notebook.exit(json.dumps(result))
