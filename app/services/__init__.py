"""What can be done with a run, without HTTP: each module is named for what it holds.

- ``starting``: starting a run once per id;
- ``run_status``: where a run's status is computed from its promises;
- ``reading``: one run (long-polled if asked) or a page of runs;
- ``settling``: where a callback is verified and its wait settled;
- ``cancelling``: ending a run and the Databricks runs it started;
- ``repairing``: rerunning the failed tasks of the Databricks runs a run waits on;
- ``run_events``: Databricks' job notifications, and the check of the run each names;
- ``errors``: what they refuse. Routers translate those to statuses (app.routers.answers).
"""
