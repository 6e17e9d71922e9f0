"""Running spine-comms for months: systemd units and timers, receipt retention, and the doctor."""
