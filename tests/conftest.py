import os

from hypothesis import HealthCheck, settings

# Deadlines measure wall time, which on a shared 2-core machine says nothing
# about correctness; CI derandomises so that a red run can be replayed.
settings.register_profile(
    "default", deadline=None, suppress_health_check=[HealthCheck.too_slow])
settings.register_profile(
    "ci", deadline=None, derandomize=True, print_blob=True,
    suppress_health_check=[HealthCheck.too_slow])
settings.load_profile("ci" if os.environ.get("CI") else "default")
