"""Who may do what at the hub: roles, API tokens, operator logins and their sessions."""
