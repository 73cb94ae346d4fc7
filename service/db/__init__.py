"""The request log: tables, engine, migrations, and the background writer."""
