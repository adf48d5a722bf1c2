"""Makes the job's own modules (lm_model, lm_data, ...) importable by the unit tests, as Ray does for it."""

import sys
from pathlib import Path

JOB_DIR = Path(__file__).resolve().parents[2] / "jobs" / "fsdp_ray"
if str(JOB_DIR) not in sys.path:
    sys.path.insert(0, str(JOB_DIR))
