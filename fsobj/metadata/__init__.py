"""The metadata store: buckets, grants, entries, checksums and user metadata, in SQLite
(`sqlite`, the default) or PostgreSQL (`postgres`), each with its numbered migrations
(`schema`, `schema_postgres`); the transactions (`transactions`, written once for both);
the namespace and its bounded write-through cache (`namespace`, `cache`); `store` is the
interface the core uses."""
