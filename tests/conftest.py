import os

from hypothesis import HealthCheck, settings

# Every pass's output is verified while the tests run (passes.manager reads this).
os.environ["TENSORJIT_VERIFY"] = "1"

settings.register_profile("default", deadline=None, max_examples=40,
                          suppress_health_check=[HealthCheck.too_slow])
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "default"))
