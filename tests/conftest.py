import gc
import os
from pathlib import Path

import jax
import pytest

jax.config.update("jax_enable_x64", True)

# One persistent XLA compilation cache for the whole run, shared by both xdist workers, the
# notebook kernels and the demo (they inherit the environment), so a program compiled again
# after a module's jax.clear_caches() or in another process is loaded, not recompiled.  On a
# clean clone it starts empty (little gain measured there); locally it carries over between
# runs.  Delete it freely.
os.environ.setdefault("JAX_COMPILATION_CACHE_DIR", str(Path(__file__).resolve().parents[1] / ".jax_cache"))
jax.config.update("jax_compilation_cache_dir", os.environ["JAX_COMPILATION_CACHE_DIR"])


@pytest.fixture(scope="session")
def lib():
    """Compiled library models, compiled once per session."""
    import pbpk

    cache = {}

    def get(name, **options):
        key = (name, tuple(sorted(options.items())))
        if key not in cache:
            cache[key] = pbpk.models.load(name, **options).compile()
        return cache[key]

    return get


@pytest.fixture(scope="module", autouse=True)
def _release_compiled_executables():
    """Drop JAX's compiled executables after each test module.

    Every XLA:CPU executable holds its own memory mappings; one pytest worker that compiles
    the whole library would pass the kernel's per-process limit (vm.max_map_count, 65530)
    and LLVM then segfaults on the next compile.  Session-scoped models stay cached; only
    their compiled code is rebuilt when a later module needs it.
    """
    yield
    jax.clear_caches()
    gc.collect()


def pytest_collection_modifyitems(config, items):
    """Notebooks first: they are the longest tests (the PSMA one alone is ~10 min on these
    machines), and with ``--dist worksteal`` a long test started first overlaps the rest of the
    suite on the other worker instead of finishing last."""
    items.sort(key=lambda item: 0 if item.nodeid.startswith("tests/test_notebooks.py") else 1)
