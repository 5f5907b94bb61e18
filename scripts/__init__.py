"""Tools run by hand or by CI, and the Databricks doubles they share with the tests.

A package so that the tests and the benchmarks import the doubles by one name
(``scripts.databricks_double``). Scripts never import ``tests``: the tests may use what
is here, not the other way round (tests/test_scripts_independent_of_tests.py).
"""
