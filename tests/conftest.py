"""Project-wide test settings: hypothesis runs the same examples every time (derandomized, no example
database, no wall-clock deadline), so a test's result depends only on the code and hypothesis's version."""

from hypothesis import settings

settings.register_profile("perfmodel", derandomize=True, database=None, deadline=None)
settings.load_profile("perfmodel")
