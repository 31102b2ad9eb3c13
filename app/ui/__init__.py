"""The ops dashboard: server-rendered pages over the API's own reads, under /ui."""
