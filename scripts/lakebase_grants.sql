-- What a DARA that does not own the resonate-pg schema needs of it, e.g. a Databricks App
-- whose service principal's role gets its database from the App's `database` resource
-- while an operator applied resonate.sql. Run as the schema's owner, after resonate.sql,
-- naming DARA's role (the App's service principal client id) in the psql variable `app`:
--   databricks psql <instance> -- -v app=<client id> -f scripts/lakebase_grants.sql
-- resonate-pg's own least-privilege role: its wire functions, and nothing else.
GRANT resonate_worker TO :"app";
-- DARA drives resonate-pg's timers itself (DARA_POSTGRES_DRIVE_TIMERS), through the one function
-- that settles what is due, run with the owner's rights as resonate-pg runs its wire functions.
ALTER FUNCTION resonate.process_timeouts() SECURITY DEFINER;
GRANT EXECUTE ON FUNCTION resonate.process_timeouts() TO :"app";
-- GET /runs lists, reads and (after DARA_RUN_RETENTION) deletes runs from the promises table.
GRANT SELECT, DELETE ON resonate.promises TO :"app";
GRANT EXECUTE ON FUNCTION resonate._promise_json(resonate.promises, bigint) TO :"app";
