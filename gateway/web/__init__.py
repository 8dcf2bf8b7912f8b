"""The dispatch console: pages, templates and static files served by the gateway's HTTP
server (see `gateway.web.pages`)."""
