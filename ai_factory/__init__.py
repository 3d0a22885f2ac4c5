"""AI Factory construct library: what platform and product teams import to build on the factory."""
