"""The exit statuses of every ``bridgemon`` command, ``lab`` included.

Scripts and CI jobs branch on them (README, "Exit codes"), so they mean the same in every
command: whether the thing checked is fine, not whether the program ran.
"""

from __future__ import annotations

OK = 0  # done; everything checked is fine
FAIL = 1  # ran, and what it checked is not fine (a site that cannot join, a failed probe,
#           a lab error)
USAGE = 2  # usage or configuration error: nothing was checked (PATH:LINE lines on stderr)
INTERRUPTED = 130  # Ctrl-C (128 + SIGINT, as shells report it); a test run is kept incomplete
