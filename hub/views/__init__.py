"""Read models shared by the API and the pages: one query, two renderings."""
