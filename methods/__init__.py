"""Built-in training methods of harness, each a plugin registered through the ``harness.methods``
entry-point group (see pyproject.toml), exactly as a third-party method would be."""
