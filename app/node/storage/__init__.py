"""SQLite persistence: schema and migrations, key protection, repositories."""
