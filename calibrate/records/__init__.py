"""Results records and sweeps: the schema, its one reader (record), the append-only store, importers."""
