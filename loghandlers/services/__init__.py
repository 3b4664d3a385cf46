"""One module per ingestion service; each holds only what differs between them."""
