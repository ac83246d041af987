"""Who may use the API: tokens, web users and sessions, roles and scopes, and the audit log."""
