"""nthlayer's exit codes (README "Exit codes"): a base module every room may import, like nthlayer.config.

The deploy gate's own 0/2/3 live with it (nthlayer.ops.gate); ``nthlayer --help`` prints the whole table
(nthlayer.cli.EXIT_CODE_MEANINGS).
"""
from __future__ import annotations

EXIT_OK = 0
EXIT_USER_ERROR = 1
EXIT_CRASH = 4
EXIT_USAGE = 64  # EX_USAGE of sysexits.h: the command was used incorrectly
EXIT_INTERRUPTED = 130
