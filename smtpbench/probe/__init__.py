"""``smtpbench probe``: one SMTP transaction, every line shown and explained (the swaks way)."""
