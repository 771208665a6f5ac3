"""Pre-event connection test runs, everything about them in one package.

- ``plan``: which sites a run tests (and which parents it probes to judge them);
- ``run``: probing and judging them into the report, and ``run_and_store``, the one way
  in for ``bridgemon test`` and the daemon, which keeps the run in the history as it goes;
- ``history``: the SQLite store of runs;
- ``pretests``: when each event's pre-tests are due (pure);
- ``saved_events``: events added through the API, checked as the inventory's are;
- ``service``: test runs inside the daemon (API, scheduled pre-tests, latest per event).

The report they produce is typed in ``bridgemon.testrun_schema`` (beside this package, so
the report formats and the API read it without importing any of this). Nothing is
imported here: ``bridgemon history`` opens the store without the probes or the daemon.
"""
