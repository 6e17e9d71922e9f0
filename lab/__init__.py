"""The spine-comms lab: real mail, calendar and DNS servers on loopback.

Run `python -m lab start` (root, after `bash lab/install.sh`); see docs/lab.md.
Stdlib only, so a plain `python3 -m lab` from the repo root works too.
"""
