"""``python -m polyrl.sweep TRIAL_DIR``: run one trial of a sweep (the local backend's trial process)."""

import sys

from polyrl.sweep.trial import trial_main

if __name__ == "__main__":
    raise SystemExit(trial_main(sys.argv[1:]))
