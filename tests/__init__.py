"""gridloom test suite (a package, so tests can share helper modules)."""
