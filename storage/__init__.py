"""Durable campaign state: the Store (local folder or ``s3://``), its ledgers and the tables it reads."""
