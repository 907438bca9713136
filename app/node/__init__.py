"""The node: an asyncio service that owns every socket, file, timer and the database."""
