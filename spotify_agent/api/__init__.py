"""REST conventions shared by every app's API: the error shape, pagination,
throttling and tenant-scoped view helpers. docs/api.md describes them."""
