"""The hub API routers, one module per resource."""
