"""Sans-I/O core of the Rill protocol (see SPEC.md)."""
