"""The HTTP layer: aiohttp handlers of the CallFS v1 REST API, one module per resource."""
