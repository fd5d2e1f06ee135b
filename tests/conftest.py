import jax
import pytest

jax.config.update("jax_enable_x64", True)


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
