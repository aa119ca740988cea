"""The command line and its commands: run, compare (the leaderboard), sweep, tune, bench, gpu-check,
predict, export."""
