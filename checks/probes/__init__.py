"""I/O primitives with deadlines and size caps, shared by every check kind and subcommand."""
