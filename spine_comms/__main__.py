from spine_comms.cli import run

run()
