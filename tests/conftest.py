"""Settings every test process needs before any module is imported."""

import os

# litellm fetches its model cost map from the internet at import unless told
# to use its bundled copy; tests may import litellm before the adapter does.
os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")

from tests.redis_server import (  # noqa: F401
    redis_server,
    redis_server_factory,
    redis_url,
    restart_on_same_port,
)
