import atexit
import os
import shutil
import tempfile

from hypothesis import HealthCheck, settings

# Every pass's output is verified while the tests run (passes.manager reads this).
os.environ["TENSORJIT_VERIFY"] = "1"

# The tests (and the processes they start) compile into a cache of their own, never the user's.
os.environ.pop("TENSORJIT_CACHE", None)
os.environ["TENSORJIT_CACHE_DIR"] = tempfile.mkdtemp(prefix="tensorjit-test-cache-")
atexit.register(shutil.rmtree, os.environ["TENSORJIT_CACHE_DIR"], ignore_errors=True)

settings.register_profile("default", deadline=None, max_examples=40,
                          suppress_health_check=[HealthCheck.too_slow])
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "default"))
